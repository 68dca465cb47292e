"""Inbound reorder/conceal buffer and outbound 20 ms pacer (re-exports only)."""

from __future__ import annotations

from mediasrv.jitter.buffer import InboundBuffer, InFrame, JitterStats
from mediasrv.jitter.pacer import ClearReport, Frame, Mark, OutboundPacer, OutItem, PacerStats

__all__ = [
    "ClearReport",
    "Frame",
    "InFrame",
    "InboundBuffer",
    "JitterStats",
    "Mark",
    "OutItem",
    "OutboundPacer",
    "PacerStats",
]
