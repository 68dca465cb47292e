"""``mediasrv vad FILE.wav [FILE.wav ...] [--json] [--engine neural|energy]``: speech segments, offline.

Theory of operation
-------------------
The recording goes through the same path as ``mediasrv turns`` (:func:`read_ulaw_8k`: WAV,
resampled to 8 kHz if needed, G.711 mu-law, 160-byte frames) and frame by frame through the VAD,
in audio time. Each speech segment is reported with four times in ms of audio:

- ``start_ms`` / ``end_ms``: where the detector estimates the speech began and ended;
- ``start_decided_ms`` / ``end_decided_ms``: the audio time at which it declared each boundary,
  i.e. what a turn detector fed live would have known and when.

``--json`` prints one JSON object per segment and line (with several files, each object also
carries ``"file"``); without it, a table. ``--engine energy`` runs the first VAD
(:class:`~mediasrv.vad.EnergyVad`) for comparison; its start estimate is the decision time minus
its onset run, its end the end of its last speech frame.

Rules: reading the WAVs and printing are the only I/O; nothing reads a clock.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np

from mediasrv.codec import FRAME_MS
from mediasrv.errors import ConfigError
from mediasrv.tools.turns_tool import read_ulaw_8k
from mediasrv.vad import EnergyVad, SegmenterConfig, VadBatch, VadModel, VadResult, VoiceActivityDetector

FRAME_BYTES: Final = 160

Engine = Literal["neural", "energy"]


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of speech the detector found (all times in ms of audio)."""

    start_ms: int
    end_ms: int
    start_decided_ms: int
    end_decided_ms: int


class _Collector:
    """Segments from one stream's verdicts: opened on ``onset_ms``, closed on ``offset_ms``."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._start = self._decided = 0

    def push(self, result: VadResult, t_ms: int) -> None:
        if result.onset_ms is not None:
            self._start, self._decided = result.onset_ms, t_ms
        if result.offset_ms is not None:
            self.segments.append(Segment(self._start, result.offset_ms, self._decided, t_ms))

    def finish(self, det: VoiceActivityDetector, end_of_audio_ms: int) -> list[Segment]:
        end = det.segmenter.flush()
        if end is not None:
            self.segments.append(Segment(self._start, end, self._decided, end_of_audio_ms))
        return self.segments


def segments_of(ulaw: bytes, engine: Engine = "neural") -> list[Segment]:
    """Run the VAD over 8 kHz mu-law audio and return the speech segments in order."""
    frames = len(ulaw) // FRAME_BYTES
    if engine == "energy":
        return _energy_segments(ulaw, frames)
    vad = VoiceActivityDetector()
    found = _Collector()
    for i in range(frames):
        found.push(vad.process_ulaw(ulaw[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]), (i + 1) * FRAME_MS)
    return found.finish(vad, frames * FRAME_MS)


def segments_of_many(
    recordings: Sequence[bytes], model: VadModel | None = None, config: SegmenterConfig | None = None
) -> list[list[Segment]]:
    """:func:`segments_of` for many recordings at once, as one batch (the daemon's way).

    The verdicts are those of running each recording alone; only the numpy calls are shared.
    """
    batch = VadBatch(model, capacity=max(1, len(recordings)))
    dets = [VoiceActivityDetector(config, batch) for _ in recordings]
    frames = [len(u) // FRAME_BYTES for u in recordings]
    found = [_Collector() for _ in recordings]
    codes = [
        np.frombuffer(u[: n * FRAME_BYTES], dtype=np.uint8).reshape(n, FRAME_BYTES)
        for u, n in zip(recordings, frames, strict=True)
    ]
    for i in range(max(frames, default=0)):
        live = [k for k, n in enumerate(frames) if i < n]
        rows = np.array([dets[k].slot for k in live], dtype=np.int64)
        probs = batch.run_ulaw(rows, np.stack([codes[k][i] for k in live]))
        for k, prob in zip(live, probs.tolist(), strict=True):
            found[k].push(dets[k].complete(prob), (i + 1) * FRAME_MS)
    return [f.finish(det, n * FRAME_MS) for f, det, n in zip(found, dets, frames, strict=True)]


def _energy_segments(ulaw: bytes, frames: int) -> list[Segment]:
    vad = EnergyVad()
    onset_ms = vad.config.onset_frames * FRAME_MS
    out: list[Segment] = []
    active = False
    start = decided = last = 0
    for i in range(frames):
        t_ms = (i + 1) * FRAME_MS
        result = vad.process_ulaw(ulaw[i * FRAME_BYTES : (i + 1) * FRAME_BYTES])
        if result.active and not active:
            start, decided = t_ms - onset_ms, t_ms
        if result.active and result.speech:
            last = t_ms
        if active and not result.active:
            out.append(Segment(start, max(last, start + FRAME_MS), decided, t_ms))
        active = result.active
    if active:
        out.append(Segment(start, max(last, start + FRAME_MS), decided, frames * FRAME_MS))
    return out


def run_vad_tool(
    wavs: Sequence[str],
    *,
    as_json: bool = False,
    engine: Engine = "neural",
    write: Callable[[str], None] = print,
) -> int:
    """Print the speech segments of each recording.

    Returns:
        0 on success, 2 if a recording cannot be read (the reason is written; other files still run).
    """
    status = 0
    several = len(wavs) > 1
    for wav in wavs:
        try:
            ulaw = read_ulaw_8k(wav)
        except ConfigError as exc:
            write(f"error: {exc}")
            status = 2
            continue
        segments = segments_of(ulaw, engine)
        name = Path(wav).name
        if as_json:
            for seg in segments:
                obj = asdict(seg)
                write(json.dumps({"file": name, **obj} if several else obj))
            continue
        write(f"{name}: {len(ulaw) // FRAME_BYTES * FRAME_MS} ms of audio, {len(segments)} speech segments")
        write(f"{'start_ms':>9} {'end_ms':>9} {'start_decided':>14} {'end_decided':>12}")
        for seg in segments:
            write(f"{seg.start_ms:>9} {seg.end_ms:>9} {seg.start_decided_ms:>14} {seg.end_decided_ms:>12}")
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``vad`` arguments to ``parser``."""
    parser.add_argument("wav", nargs="+", help="recording(s): mono 16-bit WAV, any rate")
    parser.add_argument("--json", action="store_true", help="one JSON object per segment")
    parser.add_argument(
        "--engine",
        default="neural",
        choices=["neural", "energy"],
        help="neural (default) or the first energy VAD",
    )


def main(args: Sequence[str] | argparse.Namespace | None = None) -> int:
    """Entry point: ``args`` is an argv list or a namespace parsed with :func:`add_arguments`."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="mediasrv vad", description="speech segments of a recording")
        add_arguments(parser)
        args = parser.parse_args(args)
    return run_vad_tool(args.wav, as_json=args.json, engine=args.engine)
