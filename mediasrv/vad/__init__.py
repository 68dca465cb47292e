"""Voice activity detection for 8 kHz telephone audio (re-exports only)."""

from __future__ import annotations

from mediasrv.vad.detector import FRAME_MS, SAMPLE_RATE_HZ, VadConfig, VadResult, VoiceActivityDetector

__all__ = ["FRAME_MS", "SAMPLE_RATE_HZ", "VadConfig", "VadResult", "VoiceActivityDetector"]
