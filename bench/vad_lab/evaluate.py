"""Quick lab check of a weights file on ``../shared/corpus/real`` (scored like vad_score.py).

``python -m bench.vad_lab.evaluate WEIGHTS.npz [--corpus DIR]`` runs the model over every file
of the set as one batch and prints the scorer's per-condition rows. The product's own bench is
``bench/vad_eval.py``; this is the loop used while training.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from mediasrv.corpus import shared_root
from mediasrv.tools.turns_tool import read_ulaw_8k
from mediasrv.tools.vad_tool import segments_of_many
from mediasrv.vad import SegmenterConfig, VadModel


def load_scorer() -> Any:
    path = shared_root() / "tools" / "vad_score.py"
    spec = importlib.util.spec_from_file_location("vad_score", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def score(corpus: Path, segments: dict[str, list[dict[str, int]]]) -> dict[str, dict[str, float]]:
    """Run the shared scorer on ``segments`` (file -> segment dicts) and return its JSON rows."""
    scorer = load_scorer()
    tmp = Path("var/vad_lab/_segments.json")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(segments))
    argv = sys.argv
    sys.argv = ["vad_score.py", str(corpus / "labels.json"), str(tmp)]
    lines: list[str] = []
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            scorer.main()
    finally:
        sys.argv = argv
    lines = buf.getvalue().splitlines()
    for line in lines[:-1]:
        print(line)
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--corpus", default=str(shared_root() / "corpus" / "real"))
    ap.add_argument("--on", type=float, default=None)
    ap.add_argument("--off", type=float, default=None)
    ap.add_argument("--hang", type=int, default=None)
    ap.add_argument("--onset", type=int, default=None)
    args = ap.parse_args()
    corpus = Path(args.corpus)
    labels = json.loads((corpus / "labels.json").read_text())
    files = labels["files"] if "files" in labels else labels["utterances"]
    names = [f["file"] for f in files]
    audio = [read_ulaw_8k(corpus / n) for n in names]
    cfg = SegmenterConfig()
    kw = {}
    if args.on is not None:
        kw["on_threshold"] = args.on
    if args.off is not None:
        kw["off_threshold"] = args.off
    if args.hang is not None:
        kw["hangover_frames"] = args.hang
    if args.onset is not None:
        kw["onset_frames"] = args.onset
    if kw:
        from dataclasses import replace

        cfg = replace(cfg, **kw)
    segs = segments_of_many(audio, VadModel.load(args.weights), cfg)
    out = {
        n: [s.__dict__ if hasattr(s, "__dict__") else _asdict(s) for s in ss]
        for n, ss in zip(names, segs, strict=True)
    }
    score(corpus, out)


def _asdict(seg: Any) -> dict[str, int]:
    return {
        "start_ms": seg.start_ms,
        "end_ms": seg.end_ms,
        "start_decided_ms": seg.start_decided_ms,
        "end_decided_ms": seg.end_decided_ms,
    }


if __name__ == "__main__":
    main()
