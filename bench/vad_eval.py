"""VAD bench: accuracy on real speech per line condition, beside the peers, and CPU cost per call.

For every recording of a real-speech set (``../shared/corpus/real`` by default: real talkers
under 11 line conditions, labels from the clean recording) it runs, on the same mu-law frames:

* mediasrv's VAD (:mod:`mediasrv.vad`: features + network + segmenter), all files as one batch;
* the previous VAD (:class:`mediasrv.vad.EnergyVad`, wave 1);
* Silero VAD behind pipecat's start/stop windows (:mod:`bench.baselines`), if installed;

and scores each with the shared scorer (``../shared/tools/vad_score.py``: frame accuracy,
dropouts per minute of speech, missed segments, onset and offset delays). The anchors' figures
(``../shared/docs/anchors.md``) are printed too, as measured by the peers' own runs.

Then the cost: CPU time (``time.process_time``) of the VAD per call per 20 ms frame with 1 stream
and with 100 concurrent streams in one batch (the daemon's way), median of ``--repeats`` runs.

Usage::

    .venv/bin/python bench/vad_eval.py [CORPUS_DIR] [--json] [--no-silero] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the daemon runs (see mediasrv/__init__.py)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baselines import SileroPipecat, silero_available  # noqa: E402
from bench.vad_lab.evaluate import score  # noqa: E402
from mediasrv.corpus import shared_root  # noqa: E402
from mediasrv.tools.turns_tool import read_ulaw_8k  # noqa: E402
from mediasrv.tools.vad_tool import segments_of, segments_of_many  # noqa: E402
from mediasrv.vad import VadBatch, VadHub, VoiceActivityDetector  # noqa: E402

# ../shared/docs/anchors.md, "VAD on real speech": frame accuracy per condition
ANCHORS: dict[str, tuple[float, float]] = {
    "none": (0.918, 0.937),
    "pink10": (0.798, 0.935),
    "pink5": (0.617, 0.925),
    "pink0": (0.492, 0.918),
    "white10": (0.671, 0.936),
    "white5": (0.525, 0.933),
    "babble10": (0.807, 0.605),
    "babble5": (0.710, 0.584),
    "car5": (0.814, 0.943),
    "car0": (0.658, 0.938),
    "loss3": (0.905, 0.929),
    "all": (0.720, 0.871),
}


def run_engines(corpus: Path, use_silero: bool) -> dict[str, dict[str, dict[str, float]]]:
    labels = json.loads((corpus / "labels.json").read_text())["files"]
    names = [f["file"] for f in labels]
    audio = [read_ulaw_8k(corpus / n) for n in names]
    results: dict[str, dict[str, dict[str, float]]] = {}
    ours = segments_of_many(audio)
    results["mediasrv"] = score(
        corpus, {n: [asdict(s) for s in ss] for n, ss in zip(names, ours, strict=True)}, echo=False
    )
    prev = {n: [asdict(s) for s in segments_of(a, "energy")] for n, a in zip(names, audio, strict=True)}
    results["previous"] = score(corpus, prev, echo=False)
    if use_silero:
        silero = SileroPipecat()
        peer = {n: [asdict(s) for s in silero.segments(a)] for n, a in zip(names, audio, strict=True)}
        results["silero"] = score(corpus, peer, echo=False)
    return results


def cpu_cost_us(streams: int, frames: int, repeats: int, audio: bytes) -> float:
    """Median CPU microseconds per stream per 20 ms frame for ``streams`` streams in one batch."""
    codes = np.frombuffer(audio[: (len(audio) // 160) * 160], dtype=np.uint8).reshape(-1, 160)
    samples: list[float] = []
    for _ in range(repeats):
        if streams == 1:
            vad = VoiceActivityDetector()
            payloads = [codes[i % len(codes)].tobytes() for i in range(frames)]
            t0 = time.process_time()
            for p in payloads:
                vad.process_ulaw(p)
            samples.append((time.process_time() - t0) / frames * 1e6)
            continue
        hub = VadHub(VadBatch(capacity=streams))
        dets = [hub.detector() for _ in range(streams)]
        sink: list[Any] = []
        # each stream at its own offset in the recording, so the batch holds speech and silence
        offsets = [(k * 37) % len(codes) for k in range(streams)]
        payloads2 = [
            [codes[(offsets[k] + i) % len(codes)].tobytes() for k in range(streams)] for i in range(frames)
        ]
        t0 = time.process_time()
        for i in range(frames):
            row = payloads2[i]
            for k in range(streams):
                hub.submit(dets[k], row[k], sink.append)
            hub.run()
            sink.clear()
        samples.append((time.process_time() - t0) / frames / streams * 1e6)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", default=str(shared_root() / "corpus" / "real"))
    ap.add_argument("--no-silero", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    if not (corpus / "labels.json").exists():
        print(f"no corpus at {corpus}", file=sys.stderr)
        return 2
    use_silero = not args.no_silero and silero_available()
    results = run_engines(corpus, use_silero)
    engines = list(results)
    print(f"VAD on {corpus} (shared scorer; frame accuracy pooled over 10 ms frames)")
    head = " | ".join(f"{e:>8}" for e in engines)
    print(
        f"| condition | {head} | anchor prev / silero | dropouts/min {'/'.join(engines)} | missed "
        "| onset p50 ms | end decided p50 ms |"
    )
    print("|---|" + "---|" * (len(engines) + 5))
    for cond in results["mediasrv"]:
        accs = " | ".join(f"{results[e][cond]['accuracy']:8.3f}" for e in engines)
        anchor = ANCHORS.get(cond)
        anchor_s = f"{anchor[0]:.3f} / {anchor[1]:.3f}" if anchor else "-"
        drops = "/".join(f"{results[e][cond]['dropouts_per_min']:.1f}" for e in engines)
        missed = "/".join(str(results[e][cond]["missed"]) for e in engines)
        onset = "/".join(f"{results[e][cond]['onset_p50']:.0f}" for e in engines)
        offset = "/".join(f"{results[e][cond]['offset_p50']:.0f}" for e in engines)
        print(f"| {cond} | {accs} | {anchor_s} | {drops} | {missed} | {onset} | {offset} |")
    some = next(iter(sorted(corpus.glob("*.wav"))))
    audio = read_ulaw_8k(some)
    cost = {n: cpu_cost_us(n, 500 if n == 1 else 200, args.repeats, audio) for n in (1, 100)}
    print()
    print("CPU per call per 20 ms frame (median of runs, time.process_time):")
    print(
        f"| streams | mediasrv VAD |\n|---|---|\n| 1 | {cost[1]:.1f} us |\n"
        f"| 100 (one batch) | {cost[100]:.1f} us |"
    )
    if args.json:
        print(json.dumps({"scores": results, "cpu_us": cost}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
