"""The narrow interfaces the agent runner needs from STT, LLM and TTS.

The runner never imports a vendor client; adapters in :mod:`mediasrv.agent.adapters` bind
Soniox, ElevenLabs and OpenAI/Anthropic clients to these ports, and tests can bind the
emulators' clients the same way. Every event carries the loop time it arrived at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgspec


class SttText(msgspec.Struct, frozen=True):
    """Transcript progress: newly final text and the current non-final tail."""

    final_delta: str
    nonfinal: str
    at: float
    audio_end_ms: int | None = None
    """End of the newest word on the audio timeline (lets the turn detector spot stale text)."""


class SttEndpoint(msgspec.Struct, frozen=True):
    """``<end>`` (the STT's own endpoint) or ``<fin>`` (the answer to our finalize)."""

    kind: str
    at: float


class SttFailure(msgspec.Struct, frozen=True):
    """The STT failed in a way its client could not recover from (the session is over)."""

    message: str
    at: float
    provider: str = "soniox"
    code: str = ""
    """The vendor's error code or HTTP status (``"400"``), else the error's class name."""


SttEvent = SttText | SttEndpoint | SttFailure


class STTPort(Protocol):
    """A streaming recogniser for one call."""

    async def open(self, call_ref: str) -> None: ...
    def send_audio(self, ulaw: bytes) -> None: ...
    def finalize(self) -> None: ...
    def events(self) -> AsyncIterator[SttEvent]: ...
    async def close(self) -> None: ...


class TtsAudio(msgspec.Struct, frozen=True):
    """A chunk of agent audio, already 8 kHz mu-law."""

    context_id: str
    ulaw: bytes
    at: float


class TtsDone(msgspec.Struct, frozen=True):
    """A context produced all of its audio."""

    context_id: str
    at: float


class TtsFailure(msgspec.Struct, frozen=True):
    """The TTS connection failed for good (refused, or no reconnect possible): no more audio."""

    message: str
    at: float
    provider: str = "elevenlabs"
    code: str = ""


TtsEvent = TtsAudio | TtsDone | TtsFailure


class TTSPort(Protocol):
    """A multi-context TTS connection for one call."""

    async def open(self) -> None: ...
    def new_context(self) -> str: ...
    async def send_text(self, context_id: str, text: str) -> None: ...
    async def end(self, context_id: str) -> None: ...
    async def close_context(self, context_id: str) -> None: ...
    def events(self) -> AsyncIterator[TtsEvent]: ...
    async def close(self) -> None: ...


class LlmDelta(msgspec.Struct, frozen=True):
    """Text from the reply stream."""

    text: str
    at: float


class LlmToolCall(msgspec.Struct, frozen=True):
    """A complete tool call from the stream."""

    name: str
    arguments: str
    at: float


LlmEvent = LlmDelta | LlmToolCall


class LLMPort(Protocol):
    """A chat model that streams."""

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        purpose: str = "reply",
    ) -> AsyncIterator[LlmEvent]: ...


class CallControlPort(Protocol):
    """Call-level commands outside the media stream (Telnyx Call Control)."""

    async def hangup(self, call_control_id: str) -> None: ...
    async def transfer(self, call_control_id: str, to: str) -> bool: ...
