"""Voice activity detection for 8 kHz telephone audio (re-exports only)."""

from __future__ import annotations

from mediasrv.codec import FRAME_MS
from mediasrv.vad.detector import VadHub, VoiceActivityDetector
from mediasrv.vad.energy import EnergyVad, EnergyVadConfig
from mediasrv.vad.model import VadBatch, VadModel, default_model
from mediasrv.vad.segmenter import SegmenterConfig, SpeechSegmenter, VadResult

SAMPLE_RATE_HZ = 8000

__all__ = [
    "FRAME_MS",
    "SAMPLE_RATE_HZ",
    "EnergyVad",
    "EnergyVadConfig",
    "SegmenterConfig",
    "SpeechSegmenter",
    "VadBatch",
    "VadHub",
    "VadModel",
    "VadResult",
    "VoiceActivityDetector",
    "default_model",
]
