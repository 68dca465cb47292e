"""Soniox real-time STT: wire messages, transcript assembler (sans-I/O), async client. Re-exports only."""

from __future__ import annotations

from mediasrv.providers.soniox.client import ReconnectPolicy, SonioxClient, SonioxStats, Timeouts
from mediasrv.providers.soniox.messages import Context, SttConfig, Token
from mediasrv.providers.soniox.stream import (
    Endpoint,
    FinalWords,
    Finished,
    Partial,
    Reconnected,
    SttError,
    SttEvent,
    TranscriptAssembler,
    Word,
)

__all__ = [
    "Context",
    "Endpoint",
    "FinalWords",
    "Finished",
    "Partial",
    "ReconnectPolicy",
    "Reconnected",
    "SonioxClient",
    "SonioxStats",
    "SttConfig",
    "SttError",
    "SttEvent",
    "Timeouts",
    "Token",
    "TranscriptAssembler",
    "Word",
]
