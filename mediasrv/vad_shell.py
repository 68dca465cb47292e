"""BatchedVad: the daemon's VAD, one network step per event-loop iteration for every call.

Theory of operation
-------------------
Each call's behaviour submits its inbound frame with :meth:`BatchedVad.submit`. The first frame
submitted in a loop iteration schedules one flush with ``loop.call_soon``; the flush runs the
:class:`~mediasrv.vad.VadHub` (one batched network step for every frame queued by then) and hands
each frame's verdict to its callback, in the order the frames arrived. Under load many sockets
are read in one iteration, so the batch grows with the number of calls and the numpy call
overhead is paid once per iteration instead of once per call; with one call, the frame is run
in the very next iteration (no timer, no added wait).

This is the thin asyncio layer around the sans-I/O hub: it owns no state but the scheduled
handle. A callback that raises is logged (sampled) and counted; it never stops the other calls'
verdicts (the hub runs every callback before re-raising).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mediasrv.vad import SegmenterConfig, VadHub, VadResult, VoiceActivityDetector

log = logging.getLogger(__name__)


class BatchedVad:
    """Batches the VAD of every call in this process (see module docs).

    Args:
        hub: the sans-I/O hub; a new one by default.
    """

    def __init__(self, hub: VadHub | None = None) -> None:
        self.hub = hub if hub is not None else VadHub()
        self._handle: asyncio.Handle | None = None
        self.errors = 0
        self.flushes = 0

    def detector(self, config: SegmenterConfig | None = None) -> VoiceActivityDetector:
        """A detector for a new call, sharing the batch."""
        return self.hub.detector(config)

    def submit(
        self, detector: VoiceActivityDetector, frame: bytes, done: Callable[[VadResult], None]
    ) -> None:
        """Queue one mu-law frame; ``done`` gets its verdict later in this loop's next iteration.

        Raises:
            CodecError: the frame is not 160 bytes (nothing is queued).
        """
        self.hub.submit(detector, frame, done)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._flush)

    def release(self, detector: VoiceActivityDetector) -> None:
        """A call ended: its queued frames are dropped and its slot freed."""
        self.hub.release(detector)

    def _flush(self) -> None:
        self._handle = None
        self.flushes += 1
        try:
            self.hub.run()
        except Exception:
            self.errors += 1
            if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th, ...: sampled
                log.exception("VAD verdict callback failed (%d so far)", self.errors)

    def run_now(self) -> None:
        """Flush at once (tests, and a behaviour that must see its verdict before closing)."""
        if self._handle is not None:
            self._handle.cancel()
        self._flush()
