"""VoiceActivityDetector: one stream's VAD (network + segmenter), frame in, verdict out.

Theory of operation
-------------------
The detector ties one slot of a :class:`~mediasrv.vad.model.VadBatch` (features and the
network's state) to one :class:`~mediasrv.vad.segmenter.SpeechSegmenter` (hysteresis and
boundaries). Alone it runs the network as a batch of one, which is what offline tools and tests
want. In the daemon many detectors share one batch: :meth:`submit` queues a frame, the batch's
owner runs every queued frame at once (:class:`VadHub`), and :meth:`complete` turns the
probability into the frame's :class:`~mediasrv.vad.segmenter.VadResult`. Both paths give the
same verdicts for the same frames.

Rules: no I/O, no clock. A malformed frame raises :class:`~mediasrv.errors.CodecError` before
any state changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from mediasrv.errors import CodecError
from mediasrv.vad.features import FRAME_SAMPLES, ULAW_TABLE_F32
from mediasrv.vad.model import VadBatch
from mediasrv.vad.segmenter import SegmenterConfig, SpeechSegmenter, VadResult

_ONE: NDArray[np.int64] = np.zeros(1, dtype=np.int64)


class VoiceActivityDetector:
    """Speech detection for one 8 kHz stream (see module docs).

    Args:
        config: segmenter thresholds; defaults to :class:`SegmenterConfig`.
        batch: a shared batch to take a slot in; by default a private batch of one.
    """

    def __init__(self, config: SegmenterConfig | None = None, batch: VadBatch | None = None) -> None:
        self._batch = batch if batch is not None else VadBatch(capacity=1)
        self._slot = self._batch.open()
        self._rows = np.full(1, self._slot, dtype=np.int64)
        self._frame = np.zeros((1, FRAME_SAMPLES), dtype=np.float32)
        self.segmenter = SpeechSegmenter(config)
        self._closed = False

    @property
    def slot(self) -> int:
        """This stream's row in its batch."""
        return self._slot

    @property
    def active(self) -> bool:
        """Whether speech is active (after hysteresis)."""
        return self.segmenter.active

    def reset(self) -> None:
        """Forget the stream's state (network, features, hysteresis)."""
        self._batch.reset(self._slot)
        self.segmenter.reset()

    def close(self) -> None:
        """Return the slot to the batch (once; the detector must not be used afterwards)."""
        if not self._closed:
            self._closed = True
            self._batch.close(self._slot)

    def process_ulaw(self, frame: bytes) -> VadResult:
        """Run one mu-law frame (160 bytes) through the network now and return its verdict."""
        if len(frame) != FRAME_SAMPLES:
            raise CodecError(f"VAD frame has {len(frame)} bytes, expected {FRAME_SAMPLES}")
        np.take(ULAW_TABLE_F32, np.frombuffer(frame, dtype=np.uint8), out=self._frame[0])
        return self._run()

    def process_pcm(self, frame: NDArray[np.int16]) -> VadResult:
        """Run one frame of 160 int16 samples through the network now and return its verdict."""
        if frame.shape != (FRAME_SAMPLES,):
            raise CodecError(f"VAD frame has {frame.size} samples, expected {FRAME_SAMPLES}")
        self._frame[0] = frame
        return self._run()

    def _run(self) -> VadResult:
        prob = float(self._batch.run(self._rows, self._frame)[0])
        return self.complete(prob)

    def complete(self, prob: float) -> VadResult:
        """The verdict for the next frame, given its probability (from a shared batch run)."""
        feats = self._batch.features
        slot = self._slot
        return self.segmenter.push(
            prob, float(feats.level_db[slot]), float(feats.floor_db[slot]), float(feats.voicing[slot])
        )


class VadHub:
    """Runs the queued frames of many detectors as one batch (sans-I/O; the caller schedules it).

    ``submit`` queues a stream's frame with a callback; ``run`` computes every queued frame in one
    network step and calls each callback with that frame's :class:`VadResult`, in submission
    order. A stream may queue several frames; they are run in successive steps, in order.

    Args:
        batch: the shared batch; detectors made by :meth:`detector` take slots in it.
    """

    def __init__(self, batch: VadBatch | None = None) -> None:
        self.batch = batch if batch is not None else VadBatch(capacity=64)
        self._queue: list[tuple[VoiceActivityDetector, bytes, Callable[[VadResult], None]]] = []
        self.runs = 0
        self.frames = 0

    def detector(self, config: SegmenterConfig | None = None) -> VoiceActivityDetector:
        """A detector for a new stream, sharing this hub's batch."""
        return VoiceActivityDetector(config, self.batch)

    @property
    def pending(self) -> int:
        """Frames queued and not yet run."""
        return len(self._queue)

    def submit(
        self, detector: VoiceActivityDetector, frame: bytes, done: Callable[[VadResult], None]
    ) -> None:
        """Queue one mu-law frame of ``detector``'s stream; ``done`` gets its verdict in :meth:`run`."""
        if len(frame) != FRAME_SAMPLES:
            raise CodecError(f"VAD frame has {len(frame)} bytes, expected {FRAME_SAMPLES}")
        self._queue.append((detector, frame, done))

    def release(self, detector: VoiceActivityDetector) -> int:
        """Drop ``detector``'s queued frames (no callbacks) and close it; return how many were dropped.

        A stream that ends must not leave frames behind: its slot may be reopened by the next
        call before the queue runs.
        """
        before = len(self._queue)
        self._queue = [item for item in self._queue if item[0] is not detector]
        detector.close()
        return before - len(self._queue)

    def run(self) -> int:
        """Run everything queued; return the number of frames run.

        Callbacks run after the network step; an exception in one propagates after the others
        have run (a failing call never starves the rest).
        """
        queue, self._queue = self._queue, []
        count = 0
        error: BaseException | None = None
        while queue:
            step: list[tuple[VoiceActivityDetector, bytes, Callable[[VadResult], None]]] = []
            later: list[tuple[VoiceActivityDetector, bytes, Callable[[VadResult], None]]] = []
            seen: set[int] = set()
            for item in queue:
                slot = item[0].slot
                if slot in seen:
                    later.append(item)
                else:
                    seen.add(slot)
                    step.append(item)
            rows = np.fromiter((d.slot for d, _, _ in step), dtype=np.int64, count=len(step))
            codes = np.frombuffer(b"".join(f for _, f, _ in step), dtype=np.uint8).reshape(
                len(step), FRAME_SAMPLES
            )
            probs = self.batch.run_ulaw(rows, codes)
            self.runs += 1
            self.frames += len(step)
            count += len(step)
            for (det, _, done), prob in zip(step, probs.tolist(), strict=True):
                try:
                    done(det.complete(prob))
                except Exception as exc:  # noqa: BLE001 - re-raised after the batch
                    error = error or exc
            queue = later
        if error is not None:
            raise error
        return count
