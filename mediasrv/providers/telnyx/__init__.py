"""Telnyx media streaming: wire Structs (``messages``) and the sans-I/O session (``stream``).

Re-exports only.
"""

from __future__ import annotations

from mediasrv.providers.telnyx.stream import (
    DtmfReceived,
    Event,
    FrameRejected,
    MarkEchoed,
    MediaReceived,
    StreamConnected,
    StreamErrored,
    StreamStarted,
    StreamState,
    StreamStopped,
    TelnyxStream,
)

__all__ = [
    "DtmfReceived",
    "Event",
    "FrameRejected",
    "MarkEchoed",
    "MediaReceived",
    "StreamConnected",
    "StreamErrored",
    "StreamStarted",
    "StreamState",
    "StreamStopped",
    "TelnyxStream",
]
