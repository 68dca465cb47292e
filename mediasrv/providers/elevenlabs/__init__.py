"""ElevenLabs multi-context WebSocket TTS: wire messages, sans-I/O core, async client (re-exports only)."""

from __future__ import annotations

from mediasrv.providers.elevenlabs.client import ElevenLabsClient, ElevenLabsConfig
from mediasrv.providers.elevenlabs.messages import GenerationConfig, VoiceSettings
from mediasrv.providers.elevenlabs.stream import (
    MAX_ACTIVE_CONTEXTS,
    AudioChunk,
    ContextDone,
    ContextState,
    ContextStats,
    ElevenLabsStream,
    TtsError,
    TtsEvent,
)

__all__ = [
    "MAX_ACTIVE_CONTEXTS",
    "AudioChunk",
    "ContextDone",
    "ContextState",
    "ContextStats",
    "ElevenLabsClient",
    "ElevenLabsConfig",
    "ElevenLabsStream",
    "GenerationConfig",
    "TtsError",
    "TtsEvent",
    "VoiceSettings",
]
