"""``mediasrv turns FILE.wav [--labels LABELS.json] [--json] [--profile P]``: turn decisions offline.

Theory of operation
-------------------
The recording is read with :mod:`wave` (mono 16-bit; resampled to 8 kHz with
:class:`mediasrv.codec.Resampler` if needed), encoded to G.711 mu-law with
:func:`mediasrv.codec.ulaw_encode` and cut into 160-byte frames, exactly what a Telnyx media
stream delivers. Each frame, in audio time (``t_ms`` = end of the frame), goes to the
:class:`~mediasrv.vad.VoiceActivityDetector` and its verdict to the
:class:`~mediasrv.turns.TurnDetector`.

With ``--labels`` (a corpus ``labels.json``; the entry whose ``file`` is the WAV's name), the
text side comes from the Soniox emulator core scripted with that entry and the named latency
profile (:class:`mediasrv.lab.scripted_stt.ScriptedStt`, a :class:`TextFeed`), fed the same
frames: its results reach the detector as ``on_tokens``/``on_endpoint`` at the audio time they
are produced, and a ``UserPaused`` sends ``finalize`` whose ``<fin>`` answer arrives
``stt_finalize_ms`` later, as on a live call. This module does not import the lab: the CLI
hands the class over as ``scripted_stt`` (see ``mediasrv.cli``). This is the same loop as
``bench/turns_eval.py`` (which could import :func:`analyse_recording` from here). Without
labels: audio only.

Output: one line per decision. ``--json`` prints exactly one JSON object per line,
``{"event": ..., "t_ms": ...}`` followed by extra keys, for the events ``user_started``,
``user_paused``, ``user_resumed`` and ``end_of_turn``; the readable table also lists
``false_start`` and, with labels, ends with the dead air after the labelled ``speech_end_ms``.

Rules: reading the WAV and printing are the only I/O; nothing reads a clock.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from mediasrv.codec import FRAME_MS, Resampler, ulaw_encode
from mediasrv.errors import ConfigError
from mediasrv.profiles import PROFILES, Profile
from mediasrv.providers.soniox.messages import ResultMessage
from mediasrv.turns import EndOfTurn, FalseStart, TurnDetector, UserPaused, UserResumed, UserStarted
from mediasrv.vad import VoiceActivityDetector

FRAME_BYTES: Final = 160
SAMPLE_RATE_HZ: Final = 8000
JSON_EVENTS: Final = frozenset({"user_started", "user_paused", "user_resumed", "end_of_turn"})

EventName = Literal["user_started", "user_paused", "user_resumed", "end_of_turn", "false_start"]


class TextFeed(Protocol):
    """The text side of a recording: an STT fed the call's frames, answering in audio time."""

    def receive_audio(self, frame: bytes, t_ms: int) -> list[ResultMessage]:
        """Send one frame; return the results due at ``t_ms``."""
        ...

    def finalize(self, t_ms: int) -> None:
        """Ask for the pending words to be made final (a ``UserPaused`` with ``finalize``)."""
        ...

    def deliver(self, messages: Sequence[ResultMessage], t_ms: int, detector: TurnDetector) -> None:
        """Hand results to the detector as the call's Soniox stream assembler would."""
        ...


TextFeedFactory = Callable[[Mapping[str, Any], Profile, int], TextFeed]
"""Builds the :class:`TextFeed` of a labelled recording from its labels entry, the latency
profile and the seed (the lab's :class:`~mediasrv.lab.scripted_stt.ScriptedStt`)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision of the turn detector.

    Attributes:
        event: what was decided.
        t_ms: audio time of the decision.
        extra: details (``text``, ``verdict``, ``reason``, ``silence_ms``, ``voiced_ms``).
    """

    event: EventName
    t_ms: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON object: ``event`` and ``t_ms`` first, then the details."""
        return json.dumps({"event": self.event, "t_ms": self.t_ms, **self.extra})


@dataclass
class TurnsReport:
    """Everything :func:`analyse_recording` found.

    Attributes:
        file: the WAV's name.
        duration_ms: audio analysed.
        decisions: in order.
        label: the labels entry used, if any.
        paused: ``UserPaused`` count (speculations started).
        resumed: ``UserResumed`` count (speculations cancelled).
    """

    file: str
    duration_ms: int
    decisions: list[Decision]
    label: Mapping[str, Any] | None = None
    paused: int = 0
    resumed: int = 0

    @property
    def first_end_ms(self) -> int | None:
        """Time of the first ``end_of_turn``."""
        return next((d.t_ms for d in self.decisions if d.event == "end_of_turn"), None)

    @property
    def dead_air_ms(self) -> int | None:
        """First ``end_of_turn`` minus the labelled ``speech_end_ms`` (negative: a cut-off)."""
        end = self.first_end_ms
        if end is None or self.label is None:
            return None
        return end - int(self.label["speech_end_ms"])


def read_ulaw_8k(path: str | os.PathLike[str]) -> bytes:
    """Read a mono 16-bit WAV as 8 kHz mu-law (resampled with the codec if needed).

    Raises:
        ConfigError: not a readable mono 16-bit WAV.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise ConfigError(f"turns: {path}: expected a mono 16-bit PCM WAV")
            rate = wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    except (OSError, wave.Error, EOFError) as exc:
        raise ConfigError(f"turns: cannot read {path}: {exc}") from exc
    if rate != SAMPLE_RATE_HZ:
        resampler = Resampler(rate, SAMPLE_RATE_HZ)
        pcm = resampler.process(pcm) + resampler.flush()
    return ulaw_encode(pcm)


def find_label(labels_path: str | os.PathLike[str], wav_name: str) -> dict[str, Any]:
    """The ``labels.json`` entry whose ``file`` is ``wav_name``.

    Raises:
        ConfigError: the labels file is unreadable or has no such entry.
    """
    try:
        doc = json.loads(Path(labels_path).read_text())
        entries = doc["utterances"] if isinstance(doc, dict) else doc
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"turns: cannot read labels {labels_path}: {exc}") from exc
    for entry in entries:
        if isinstance(entry, dict) and entry.get("file") == wav_name:
            return entry
    raise ConfigError(f"turns: {labels_path} has no entry for {wav_name}")


def analyse_recording(
    ulaw: bytes,
    *,
    file: str = "",
    label: Mapping[str, Any] | None = None,
    profile: Profile | None = None,
    seed: int = 1,
    scripted_stt: TextFeedFactory | None = None,
) -> TurnsReport:
    """Run the VAD and the TurnDetector (and, with ``label``, the scripted STT) over audio.

    Args:
        ulaw: 8 kHz mu-law audio; a trailing partial frame is ignored.
        file: name for the report.
        label: corpus labels entry to script the STT with; None for audio only.
        profile: Soniox latency profile (default ``typical``).
        seed: emulator randomness.
        scripted_stt: builds the text side from ``label`` (the lab's ``ScriptedStt``).

    Returns:
        The decisions in order, with the label for dead-air figures.

    Raises:
        ValueError: ``label`` without ``scripted_stt``.
    """
    if label is not None and scripted_stt is None:
        raise ValueError("analyse_recording: a label needs scripted_stt to play the text side")
    vad = VoiceActivityDetector()
    det = TurnDetector()
    stt = None
    if label is not None and scripted_stt is not None:
        stt = scripted_stt(label, profile or PROFILES["typical"], seed)
    report = TurnsReport(
        file=file, duration_ms=len(ulaw) // FRAME_BYTES * FRAME_MS, decisions=[], label=label
    )
    for i in range(len(ulaw) // FRAME_BYTES):
        t_ms = (i + 1) * FRAME_MS
        frame = ulaw[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]
        det.on_vad(vad.process_ulaw(frame), t_ms)
        if stt is not None:
            stt.deliver(stt.receive_audio(frame, t_ms), t_ms, det)
        for event in det.events_received():
            decision = _decision_of(event)
            if decision is None:
                continue
            report.decisions.append(decision)
            if isinstance(event, UserPaused):
                report.paused += 1
                if stt is not None and event.finalize:
                    stt.finalize(event.t_ms)
            elif isinstance(event, UserResumed):
                report.resumed += 1
    return report


def _decision_of(event: object) -> Decision | None:
    if isinstance(event, UserStarted):
        return Decision("user_started", event.t_ms)
    if isinstance(event, UserPaused):
        extra = {"text": event.text, "verdict": event.verdict.name.lower(), "silence_ms": event.silence_ms}
        return Decision("user_paused", event.t_ms, extra)
    if isinstance(event, UserResumed):
        return Decision("user_resumed", event.t_ms)
    if isinstance(event, EndOfTurn):
        extra = {
            "text": event.text,
            "reason": event.reason,
            "verdict": event.verdict.name.lower(),
            "silence_ms": event.silence_ms,
        }
        return Decision("end_of_turn", event.t_ms, extra)
    if isinstance(event, FalseStart):
        return Decision("false_start", event.t_ms, {"voiced_ms": event.voiced_ms})
    return None  # agent-side events (barge-in, backchannel, overlap) cannot happen offline


def render_table(report: TurnsReport, write: Callable[[str], None]) -> None:
    """Print the decisions as a table, then the dead air if the recording is labelled."""
    write(f"{report.file}: {report.duration_ms} ms of audio")
    write(f"{'t_ms':>7}  {'event':<13} detail")
    for d in report.decisions:
        detail = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in d.extra.items())
        write(f"{d.t_ms:>7}  {d.event:<13} {detail}".rstrip())
    if report.label is None:
        return
    end = report.label["speech_end_ms"]
    dead = report.dead_air_ms
    if dead is None:
        write(f"speech_end_ms={end}: no end of turn (missed)")
    elif dead < 0:
        write(f"speech_end_ms={end}: end of turn {-dead} ms BEFORE the end of speech (cut-off)")
    else:
        write(f"speech_end_ms={end}: dead air {dead} ms")
    write(f"speculations: {report.paused} started, {report.resumed} cancelled")


def run_turns_tool(
    wav: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    as_json: bool = False,
    profile: str = "typical",
    seed: int = 1,
    write: Callable[[str], None] = print,
    scripted_stt: TextFeedFactory | None = None,
) -> int:
    """Analyse one recording and print its decisions.

    Args:
        wav: the recording (mono 16-bit WAV, any rate).
        labels: a corpus ``labels.json`` with an entry for the WAV's name (scripts the STT).
        as_json: one JSON object per line instead of a table.
        profile: Soniox latency profile name (see :data:`mediasrv.profiles.PROFILES`).
        seed: emulator randomness.
        write: where lines go.
        scripted_stt: the text side for ``labels`` (the CLI passes the lab's ``ScriptedStt``).

    Returns:
        0 on success, 2 if the inputs cannot be used (the reason is written).
    """
    try:
        if profile not in PROFILES:
            raise ConfigError(f"turns: unknown profile {profile!r} (one of {', '.join(sorted(PROFILES))})")
        if labels is not None and scripted_stt is None:
            raise ConfigError("turns: --labels needs the scripted STT (run it as `mediasrv turns`)")
        label = None if labels is None else find_label(labels, Path(wav).name)
        ulaw = read_ulaw_8k(wav)
    except ConfigError as exc:
        write(f"error: {exc}")
        return 2
    report = analyse_recording(
        ulaw,
        file=Path(wav).name,
        label=label,
        profile=PROFILES[profile],
        seed=seed,
        scripted_stt=scripted_stt,
    )
    if as_json:
        for d in report.decisions:
            if d.event in JSON_EVENTS:
                write(d.to_json())
    else:
        render_table(report, write)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``turns`` arguments to ``parser`` (for the ``mediasrv turns`` sub-command)."""
    parser.add_argument("wav", help="recording (mono 16-bit WAV)")
    parser.add_argument(
        "--labels", default=None, help="corpus labels.json: script the STT with the WAV's entry"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per decision")
    parser.add_argument(
        "--profile", default="typical", choices=sorted(PROFILES), help="Soniox latency profile"
    )
    parser.add_argument("--seed", type=int, default=1, help="emulator randomness")


def main(
    args: Sequence[str] | argparse.Namespace | None = None, *, scripted_stt: TextFeedFactory | None = None
) -> int:
    """Entry point: ``args`` is an argv list or a namespace parsed with :func:`add_arguments`.

    Args:
        args: the command line.
        scripted_stt: the text side for ``--labels`` (see :func:`run_turns_tool`).

    Returns:
        The exit status of :func:`run_turns_tool`.
    """
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="mediasrv turns", description="turn decisions over a recording")
        add_arguments(parser)
        args = parser.parse_args(args)
    return run_turns_tool(
        args.wav,
        labels=args.labels,
        as_json=args.json,
        profile=args.profile,
        seed=args.seed,
        scripted_stt=scripted_stt,
    )


if __name__ == "__main__":  # pragma: no cover
    # Run as `mediasrv turns`: the CLI is what hands the lab's scripted STT over for --labels.
    from mediasrv.cli import main as cli_main

    raise SystemExit(cli_main(["turns", *sys.argv[1:]]))
