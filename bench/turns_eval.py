"""Offline turn-taking evaluation on the labelled telephone corpus (audio time, no sockets).

For every WAV in the corpus directory the audio is re-encoded to G.711 mu-law and fed frame by
frame (160 bytes = 20 ms), as a Telnyx media stream delivers it, to:

* ``mediasrv.vad.VoiceActivityDetector`` -> ``mediasrv.turns.TurnDetector.on_vad``;
* the Soniox emulator core (``mediasrv.lab.emulators.soniox_script.SonioxScript``, scripted with the
  file's labelled segments and a named latency profile) -> ``on_tokens``/``on_endpoint``.
  When the detector says ``UserPaused`` the harness sends ``finalize`` and delivers the
  ``<fin>`` answer ``stt_finalize_ms`` later, as the call shell would.

Measured per file (first ``EndOfTurn``): dead air = decision - ``speech_end_ms`` (correct
detections only), false cut-off = decision before ``speech_end_ms``, missed = no decision.
Baselines run in the same pass: VAD-only fixed silences (200 ms, 800 ms) and Soniox ``<end>``
alone (the old platform). Peers' figures (``docs/anchors.md``) are printed as static rows.
VAD frame accuracy is scored against the labels (speech = inside a segment).

Usage::

    .venv/bin/python bench/turns_eval.py [CORPUS_DIR] [--profile typical] [--seed 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.baselines import SileroStream, silero_available  # noqa: E402
from mediasrv.codec import array_to_ulaw  # noqa: E402
from mediasrv.corpus import dev_corpus  # noqa: E402
from mediasrv.lab.scripted_stt import ScriptedStt  # noqa: E402
from mediasrv.profiles import PROFILES, Profile  # noqa: E402
from mediasrv.turns import EndOfTurn, TurnConfig, TurnDetector, UserPaused, UserResumed  # noqa: E402
from mediasrv.vad import EnergyVad, SegmenterConfig, VadResult, VoiceActivityDetector  # noqa: E402

DEFAULT_CORPUS = dev_corpus()
FRAME_MS = 20
FRAME_BYTES = 160
PEER_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("peer: Silero VAD, stop 0.8 s", "940 / 1005", "0.0", "3.0"),
    ("peer: Silero VAD, stop 0.2 s", "322 / 408", "31.0", "3.0"),
    ("peer: Silero 0.2 s + smart-turn v3.2", "330 / 410", "18.0", "23.0"),
    ("peer: webrtcvad mode 3, 800 ms", "860 / 914", "3.0", "10.0"),
)


@dataclass(frozen=True)
class Utterance:
    """One labelled corpus file, with its audio as mu-law bytes."""

    file: str
    kind: str
    noise: str
    speech_end_ms: int
    segments: tuple[tuple[int, int], ...]
    label: dict[str, Any]
    ulaw: bytes

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Yield (audio time at the frame's end, 160-byte frame)."""
        for i in range(len(self.ulaw) // FRAME_BYTES):
            yield (i + 1) * FRAME_MS, self.ulaw[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]


@dataclass
class Outcome:
    """What one detector configuration decided on one file."""

    file: str
    kind: str
    speech_end_ms: int
    end_ms: int | None = None
    text: str = ""
    paused: int = 0
    resumed: int = 0
    noise: str = ""

    @property
    def cut(self) -> bool:
        """The first decision came before the end of speech."""
        return self.end_ms is not None and self.end_ms < self.speech_end_ms

    @property
    def missed(self) -> bool:
        """No decision at all."""
        return self.end_ms is None

    @property
    def dead_air_ms(self) -> int | None:
        """Decision minus end of speech, for correct detections."""
        if self.end_ms is None or self.cut:
            return None
        return self.end_ms - self.speech_end_ms


@dataclass
class Summary:
    """Aggregates over a set of outcomes."""

    name: str
    n: int
    p50: float | None
    p95: float | None
    cut_pct: float
    missed_pct: float
    short_missed: int
    speculations: int = 0
    cancelled: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def load_corpus(corpus_dir: Path = DEFAULT_CORPUS) -> list[Utterance]:
    """Read ``labels.json`` and every WAV it names; audio is re-encoded to mu-law."""
    labels = json.loads((corpus_dir / "labels.json").read_text())["utterances"]
    out = []
    for label in labels:
        with wave.open(str(corpus_dir / label["file"])) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        noise = label["noise"]
        out.append(
            Utterance(
                file=label["file"],
                kind=label["kind"],
                noise=f"{noise['type']}{'' if noise['snr_db'] is None else noise['snr_db']}",
                speech_end_ms=int(label["speech_end_ms"]),
                segments=tuple((int(s["start_ms"]), int(s["end_ms"])) for s in label["segments"]),
                label=label,
                ulaw=array_to_ulaw(pcm),
            )
        )
    return out


# --------------------------------------------------------------------------- the STT side


class SonioxFeed(ScriptedStt):
    """The offline tool's Soniox feed (``mediasrv turns``), noting when ``<end>`` first came."""

    def __init__(self, utt: Utterance, profile: Profile, seed: int) -> None:
        super().__init__(utt.label, profile, seed)
        self.first_end_ms: int | None = None

    def deliver(self, messages: Sequence[Any], t_ms: int, detector: TurnDetector | None) -> None:  # type: ignore[override]
        """Hand results to the detector (if any) and remember the first ``<end>``."""
        if self.first_end_ms is None and any(t.text == "<end>" for m in messages for t in m.tokens):
            self.first_end_ms = t_ms
        if detector is not None:
            ScriptedStt.deliver(messages, t_ms, detector)


# ------------------------------------------------------------------------------ runners


class FrameVad(Protocol):
    """A streaming VAD: one 160-byte mu-law frame in, that frame's verdict out."""

    def process_ulaw(self, frame: bytes) -> VadResult: ...


VAD_ENGINES: dict[str, Callable[[], FrameVad]] = {
    "mediasrv": VoiceActivityDetector,
    "previous": EnergyVad,
}
"""The VADs the per-condition table compares (Silero is added when the bench extra is installed)."""
if silero_available():
    VAD_ENGINES["silero"] = SileroStream


def run_ours(
    utt: Utterance,
    profile: Profile,
    seed: int,
    turn_config: TurnConfig | None = None,
    vad_config: SegmenterConfig | None = None,
    vad_factory: Callable[[], FrameVad] | None = None,
) -> Outcome:
    """Run VAD + TurnDetector + Soniox emulator over one file; return the first decision."""
    vad = vad_factory() if vad_factory is not None else VoiceActivityDetector(config=vad_config)
    det = TurnDetector(turn_config)
    feed = SonioxFeed(utt, profile, seed)
    out = Outcome(utt.file, utt.kind, utt.speech_end_ms, noise=utt.noise)
    for t_ms, frame in utt.frames():
        det.on_vad(vad.process_ulaw(frame), t_ms)
        feed.deliver(feed.receive_audio(frame, t_ms), t_ms, det)
        for ev in det.events_received():
            if isinstance(ev, UserPaused):
                out.paused += 1
                if ev.finalize:
                    feed.finalize(ev.t_ms)
            elif isinstance(ev, UserResumed):
                out.resumed += 1
            elif isinstance(ev, EndOfTurn) and out.end_ms is None:
                out.end_ms, out.text = ev.t_ms, ev.text
    return out


def run_endpoint_only(utt: Utterance, profile: Profile, seed: int) -> Outcome:
    """Old-platform baseline: the turn ends at Soniox's first ``<end>`` (no finalize sent)."""
    feed = SonioxFeed(utt, profile, seed)
    for t_ms, frame in utt.frames():
        feed.deliver(feed.receive_audio(frame, t_ms), t_ms, None)
        if feed.first_end_ms is not None:
            break
    return Outcome(utt.file, utt.kind, utt.speech_end_ms, end_ms=feed.first_end_ms)


def run_fixed_silence(utt: Utterance, silence_ms: int, vad_config: SegmenterConfig | None = None) -> Outcome:
    """VAD-only baseline: the turn ends after ``silence_ms`` of silence following speech."""
    vad = VoiceActivityDetector(config=vad_config)
    out = Outcome(utt.file, utt.kind, utt.speech_end_ms)
    last_voice: int | None = None
    for t_ms, frame in utt.frames():
        r = vad.process_ulaw(frame)
        if r.active and r.speech:
            last_voice = t_ms
        elif last_voice is not None and t_ms - last_voice >= silence_ms:
            out.end_ms = t_ms
            break
    return out


def vad_accuracy(
    utts: Sequence[Utterance], vad_config: SegmenterConfig | None = None, lead_silence_ms: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Per noise condition: (frame accuracy, speech recall, false-alarm rate) of ``active``.

    ``lead_silence_ms`` of digital silence (mu-law 0xFF) go before each file, unscored: the
    line noise then starts as a step, as on a live call after a muted stretch (the demo's
    caller sends digital silence between utterances).
    """
    counts: dict[str, list[int]] = {}
    lead = b"\xff" * FRAME_BYTES
    for utt in utts:
        vad = VoiceActivityDetector(config=vad_config)
        for _ in range(lead_silence_ms // FRAME_MS):
            vad.process_ulaw(lead)
        for key in (utt.noise, "all"):
            counts.setdefault(key, [0, 0, 0, 0])
        for t_ms, frame in utt.frames():
            active = vad.process_ulaw(frame).active
            centre = t_ms - FRAME_MS // 2
            speech = any(a <= centre < b for a, b in utt.segments)
            idx = (0 if active else 2) if speech else (1 if active else 3)  # tp fp fn tn
            counts[utt.noise][idx] += 1
            counts["all"][idx] += 1
    result = {}
    for key, (tp, fp, fn, tn) in counts.items():
        result[key] = ((tp + tn) / max(1, tp + fp + fn + tn), tp / max(1, tp + fn), fp / max(1, fp + tn))
    return result


# ------------------------------------------------------------------------------ report


def summarise(name: str, outcomes: Sequence[Outcome]) -> Summary:
    """Aggregate outcomes into dead-air percentiles and error rates."""
    dead = [o.dead_air_ms for o in outcomes if o.dead_air_ms is not None]
    n = len(outcomes)
    return Summary(
        name=name,
        n=n,
        p50=float(np.percentile(dead, 50)) if dead else None,
        p95=float(np.percentile(dead, 95)) if dead else None,
        cut_pct=100.0 * sum(o.cut for o in outcomes) / max(1, n),
        missed_pct=100.0 * sum(o.missed for o in outcomes) / max(1, n),
        short_missed=sum(o.missed for o in outcomes if o.kind == "short"),
        speculations=sum(o.paused for o in outcomes),
        cancelled=sum(o.resumed for o in outcomes),
    )


def _fmt(s: Summary) -> str:
    dead = "-" if s.p50 is None or s.p95 is None else f"{s.p50:.0f} / {s.p95:.0f}"
    spec = f"{s.speculations}/{s.cancelled}" if s.speculations else "-"
    return (
        f"| {s.name:<44} | {s.n:>3} | {dead:>11} | {s.cut_pct:>5.1f} | {s.missed_pct:>5.1f} "
        f"| {s.short_missed:>5} | {spec:>9} |"
    )


HEADER = (
    f"| {'configuration':<44} | {'n':>3} | {'dead p50/95':>11} | {'cut%':>5} | {'miss%':>5} "
    f"| {'short':>5} | {'spec/canc':>9} |\n"
    + "|".join(["", "-" * 46, "-" * 5, "-" * 13, "-" * 7, "-" * 7, "-" * 7, "-" * 11, ""])
)


@dataclass
class Evaluation:
    """Every outcome of one evaluation run (for tests and other scripts)."""

    ours: dict[str, list[Outcome]]
    end_only: list[Outcome]
    fixed: dict[int, list[Outcome]]
    vad: dict[str, tuple[float, float, float]]
    vad_after_silence: dict[str, tuple[float, float, float]]
    variants: dict[str, list[Outcome]] = field(default_factory=dict)
    engines: dict[str, list[Outcome]] = field(default_factory=dict)
    """The main profile's run with each VAD of :data:`VAD_ENGINES` (the same turn detector)."""


def evaluate(
    utts: Sequence[Utterance],
    profiles: Sequence[str] = ("typical",),
    seed: int = 1,
    turn_config: TurnConfig | None = None,
    vad_config: SegmenterConfig | None = None,
    fixed_silences_ms: Sequence[int] = (200, 800),
) -> Evaluation:
    """Run every configuration over ``utts``; the first profile also gives the ``<end>`` baseline."""
    ours = {
        name: [run_ours(u, PROFILES[name], seed + i, turn_config, vad_config) for i, u in enumerate(utts)]
        for name in profiles
    }
    end_only = [run_endpoint_only(u, PROFILES[profiles[0]], seed + i) for i, u in enumerate(utts)]
    fixed = {ms: [run_fixed_silence(u, ms, vad_config) for u in utts] for ms in fixed_silences_ms}
    base = turn_config or TurnConfig()
    strict = dataclasses.replace(base, endpoint_always_commits=True)
    variants = {
        f"variant: <end> always commits ('{profiles[0]}')": [
            run_ours(u, PROFILES[profiles[0]], seed + i, strict, vad_config) for i, u in enumerate(utts)
        ]
    }
    engines = {"mediasrv": ours[profiles[0]]}
    for name, factory in VAD_ENGINES.items():
        if name not in engines:
            engines[name] = [
                run_ours(u, PROFILES[profiles[0]], seed + i, turn_config, vad_factory=factory)
                for i, u in enumerate(utts)
            ]
    return Evaluation(
        ours,
        end_only,
        fixed,
        vad_accuracy(utts, vad_config),
        vad_accuracy(utts, vad_config, lead_silence_ms=2000),
        variants,
        engines,
    )


def _what(o: Outcome) -> str:
    return "missed" if o.missed else f"cut at {o.end_ms} < {o.speech_end_ms}"


def render(ev: Evaluation, printer: Callable[[str], None] = print) -> None:
    """Print the tables of an :class:`Evaluation`."""
    main = next(iter(ev.ours))
    printer(HEADER)
    for name, outs in ev.ours.items():
        printer(_fmt(summarise(f"mediasrv, Soniox emulator '{name}'", outs)))
    for name, outs in ev.variants.items():
        printer(_fmt(summarise(name, outs)))
    for ms, outs in ev.fixed.items():
        printer(_fmt(summarise(f"baseline: our VAD, fixed {ms} ms silence", outs)))
    printer(_fmt(summarise(f"baseline: Soniox <end> only ('{main}')", ev.end_only)))
    for name, dead, cut, miss in PEER_ROWS:
        printer(f"| {name:<44} |  62 | {dead:>11} | {cut:>5} | {miss:>5} |     - |         - |")
    printer(f"\nPer kind (mediasrv, profile '{main}'; fixed-silence baselines beside it):")
    printer(HEADER)
    for kind in ("short", "statement", "hesitation", "numbers"):
        printer(_fmt(summarise(f"mediasrv  {kind}", [o for o in ev.ours[main] if o.kind == kind])))
        for ms, outs in ev.fixed.items():
            printer(_fmt(summarise(f"fixed {ms} ms  {kind}", [o for o in outs if o.kind == kind])))
    render_conditions(ev, main, printer)
    printer("\nLeave-some-out check (thresholds are fixed defaults; even vs odd files):")
    printer(HEADER)
    for parity in ("even", "odd"):
        sel = [o for i, o in enumerate(ev.ours[main]) if i % 2 == (0 if parity == "even" else 1)]
        printer(_fmt(summarise(f"mediasrv  {parity} files", sel)))
    printer("\nVAD frame accuracy vs labels (active after hysteresis):")
    printer("(right: each file after 2 s of digital silence, so its line noise starts as a step)")
    head = ("noise", "accuracy", "recall", "false alarm", "after silence")
    printer(f"| {head[0]:<8} | {head[1]:>8} | {head[2]:>6} | {head[3]:>11} | {head[4]:>13} |")
    printer(f"|{'-' * 10}|{'-' * 10}|{'-' * 8}|{'-' * 13}|{'-' * 15}|")
    for key, (acc, rec, fa) in sorted(ev.vad.items()):
        after = ev.vad_after_silence[key][0]
        printer(f"| {key:<8} | {acc:>8.3f} | {rec:>6.3f} | {fa:>11.3f} | {after:>13.3f} |")
    bad = [o for o in ev.ours[main] if o.cut or o.missed]
    if bad:
        printer(
            "\nCut-offs / misses (mediasrv): "
            + ", ".join(f"{o.file}({o.kind}, {_what(o)}: {o.text!r})" for o in bad)
        )
    slow = sorted(ev.ours[main], key=lambda o: -(o.dead_air_ms or 0))[:5]
    printer("Slowest (mediasrv): " + ", ".join(f"{o.file} {o.dead_air_ms} ms {o.text!r}" for o in slow))


def _cell(outs: Sequence[Outcome]) -> str:
    s = summarise("", outs)
    dead = "-" if s.p50 is None or s.p95 is None else f"{s.p50:.0f}/{s.p95:.0f}"
    short = f" s{s.short_missed}" if s.short_missed else ""
    return f"{dead} {s.cut_pct:.0f}%{short}"


def render_conditions(ev: Evaluation, profile: str, printer: Callable[[str], None] = print) -> None:
    """Per line condition and VAD (same turn detector, profile ``profile``): dead air p50/p95 ms,
    false cut-offs, and short answers missed (``sN``)."""
    names = list(ev.engines)
    conditions = sorted({o.noise for o in ev.engines["mediasrv"]}, key=_condition_order)
    printer(f"\nPer line condition, each VAD under the same turn detector (profile '{profile}'):")
    printer("cell: dead air p50/p95 ms, false cut-offs %, sN = N short answers missed")
    printer("| condition | n | " + " | ".join(f"{n:<20}" for n in names) + " |")
    printer("|---|---|" + "|".join("-" * 22 for _ in names) + "|")
    rows = [*conditions, "all"]
    for cond in rows:
        cells = []
        n = 0
        for name in names:
            outs = [o for o in ev.engines[name] if cond in ("all", o.noise)]
            n = len(outs)
            cells.append(f"{_cell(outs):<20}")
        printer(f"| {cond:<9} | {n:>3} | " + " | ".join(cells) + " |")
    worst = max(
        (summarise("", [o for o in ev.engines["mediasrv"] if o.noise == c]).cut_pct, c) for c in conditions
    )
    printer(f"mediasrv's worst condition for cut-offs: {worst[1]} ({worst[0]:.1f} %)")


def _condition_order(name: str) -> tuple[int, str]:
    order = ("clean", "pink", "white", "babble", "car", "loss")
    head = next((i for i, k in enumerate(order) if name.startswith(k)), len(order))
    digits = "".join(ch for ch in name if ch.isdigit())
    return head, f"{999 - int(digits) if digits else 999:03d}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--profile",
        action="append",
        choices=sorted(PROFILES),
        help="Soniox latency profile(s); default: typical, fast, slow",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    profiles = args.profile or ["typical", "fast", "slow"]
    render(evaluate(load_corpus(args.corpus), profiles, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
