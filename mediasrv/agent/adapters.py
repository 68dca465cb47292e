"""Bindings of the vendor clients to the runner's ports (:mod:`mediasrv.agent.ports`).

Each adapter is a few lines of translation: the clients own their protocols, reconnects and
timing; the adapters only turn their events into the port events the runner understands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from mediasrv.agent.config import AgentConfig, STTContext
from mediasrv.agent.failures import error_code
from mediasrv.agent.ports import (
    LlmDelta,
    LlmEvent,
    LlmToolCall,
    SttEndpoint,
    SttEvent,
    SttFailure,
    SttText,
    TtsAudio,
    TtsDone,
    TtsEvent,
    TtsFailure,
)
from mediasrv.providers.elevenlabs import stream as el
from mediasrv.providers.elevenlabs.client import ElevenLabsClient, ElevenLabsConfig
from mediasrv.providers.elevenlabs.messages import VoiceSettings
from mediasrv.providers.llm.messages import TextDelta, ToolCall
from mediasrv.providers.llm.stream import LLMClient
from mediasrv.providers.soniox import stream as sx
from mediasrv.providers.soniox.client import SonioxClient
from mediasrv.providers.soniox.messages import Context, ContextEntry, SttConfig, TranslationTerm

log = logging.getLogger("mediasrv.agent.stt")

FATAL_TTS_ERRORS = frozenset({"connection_refused", "reconnect_failed"})
"""``TtsError.error`` values after which the ElevenLabs client has no connection left."""


def soniox_context(context: str | STTContext | None) -> Context | None:
    """The agent's STT context as Soniox's structured object (a plain string becomes its ``text``).

    The current API takes ``context`` as an object (the SDK's ``RealtimeSTTConfig.context`` is a
    ``StructuredContext``); empty parts are left out, and an empty context is not sent at all.
    """
    if context is None:
        return None
    if isinstance(context, str):
        return Context(text=context) if context.strip() else None
    built = Context(
        general=[ContextEntry(key=k, value=v) for k, v in context.general.items()] or None,
        text=context.text or None,
        terms=list(context.terms) or None,
        translation_terms=[TranslationTerm(source=k, target=v) for k, v in context.translation_terms.items()]
        or None,
    )
    return None if built == Context() else built


class SonioxSTT:
    """Soniox real-time STT as an :class:`~mediasrv.agent.ports.STTPort`."""

    def __init__(self, agent: AgentConfig, *, url: str, api_key: str) -> None:
        cfg = SttConfig(
            model=agent.stt.model,
            language_hints=agent.stt.language_hints or None,
            context=soniox_context(agent.stt.context),
            max_endpoint_delay_ms=agent.stt.max_endpoint_delay_ms,
        )
        self.config = cfg
        """The session config (each call adds its ``client_reference_id``)."""
        self._url = url
        self._api_key = api_key
        self.client: SonioxClient | None = None
        self._open = False

    async def open(self, call_ref: str) -> None:
        """Connect (the session config, tagged with the call's reference, goes out at once)."""
        cfg = msgspec.structs.replace(self.config, client_reference_id=call_ref)
        self.client = SonioxClient(cfg, url=self._url, api_key=self._api_key)
        await self.client.__aenter__()
        self._open = True

    def send_audio(self, ulaw: bytes) -> None:
        """Forward one inbound frame untouched (never blocks)."""
        if self.client is not None and self._open:
            self.client.send_audio(ulaw)

    def finalize(self) -> None:
        """Ask Soniox to finalize what it has (answered by ``<fin>``)."""
        if self.client is not None and self._open:
            self.client.finalize()

    async def events(self) -> AsyncIterator[SttEvent]:
        """Transcript progress and endpoints, as the runner wants them."""
        if self.client is None:
            return
        # The transcript comes from each Partial: all finals so far plus the latest non-final
        # tail. The final text is cumulative, so the new final words are its growth; handing
        # the detector one update per message keeps the transcript from flickering.
        final_seen = ""
        newest_end: int | None = None
        try:
            async for ev in self.client:
                if isinstance(ev, (sx.FinalWords, sx.Partial)):
                    ends = [w.end_ms for w in ev.words if w.end_ms is not None]
                    if ends:
                        newest_end = max(ends) if newest_end is None else max(newest_end, *ends)
                if isinstance(ev, sx.Partial):
                    text = ev.text_final
                    if text.startswith(final_seen):
                        delta = text[len(final_seen) :]
                    else:  # the assembler started a new utterance
                        delta = " " + text
                    final_seen = text
                    if delta and not delta.startswith(" "):
                        delta = " " + delta
                    tail = " " + ev.text_nonfinal if ev.text_nonfinal else ""  # the assembler strips it
                    yield SttText(delta, tail, ev.at, newest_end)
                elif isinstance(ev, sx.Endpoint):
                    yield SttEndpoint(ev.kind, ev.at)
                elif isinstance(ev, sx.SttError) and not ev.retryable and ev.code is not None:
                    yield SttFailure(ev.message, ev.at, code=str(ev.code))
        except Exception as exc:  # the client raised a ProviderError: report, do not crash the call
            yield SttFailure(str(exc), asyncio.get_running_loop().time(), code=error_code(exc))

    async def close(self) -> None:
        """Send end-of-audio and close."""
        if self.client is not None and self._open:
            self._open = False
            await self.client.aclose()


class ElevenLabsTTS:
    """ElevenLabs multi-context WebSocket as a :class:`~mediasrv.agent.ports.TTSPort`."""

    def __init__(self, agent: AgentConfig, *, base_url: str, api_key: str) -> None:
        # The agent's speed rides on each context's init frame (voice_settings are accepted only
        # there); the vendor default 1.0 is left out, so the wire carries only what was chosen.
        speed = agent.tts.speed
        self.client = ElevenLabsClient(
            ElevenLabsConfig(voice_settings=VoiceSettings(speed=speed) if speed != 1.0 else None),
            api_key=api_key,
            voice_id=agent.tts.voice_id,
            base_url=base_url,
            model_id=agent.tts.model,
            output_format=agent.tts.output_format,
        )

    async def open(self) -> None:
        """Open the call's one socket (during call set-up)."""
        await self.client.connect()

    def new_context(self) -> str:
        """A context id for the next reply."""
        return self.client.new_context()

    async def send_text(self, context_id: str, text: str) -> None:
        """Send a clause of the reply."""
        await self.client.send_text(context_id, text, flush=True)

    async def end(self, context_id: str) -> None:
        """No more text for this reply."""
        await self.client.end(context_id)

    async def close_context(self, context_id: str) -> None:
        """Barge-in / dropped speculation: stop this reply's audio."""
        await self.client.close_context(context_id)

    async def events(self) -> AsyncIterator[TtsEvent]:
        """Audio chunks (8 kHz mu-law) the moment they arrive, and context ends."""
        loop = asyncio.get_running_loop()
        async for ev in self.client.events():
            if isinstance(ev, el.AudioChunk):
                yield TtsAudio(ev.context_id, ev.ulaw, loop.time())
            elif isinstance(ev, el.ContextDone) or isinstance(ev, el.TtsError):
                if isinstance(ev, el.TtsError) and ev.error in FATAL_TTS_ERRORS:
                    code = "" if ev.code is None else str(ev.code)
                    yield TtsFailure(ev.message or ev.error, loop.time(), code=code)
                yield TtsDone(ev.context_id or "", loop.time())

    async def close(self) -> None:
        """Close the socket."""
        await self.client.aclose()


class StreamingLLM:
    """Any :class:`~mediasrv.providers.llm.stream.LLMClient` as an LLM port."""

    def __init__(self, client: LLMClient, *, max_tokens: int = 200, temperature: float | None = None) -> None:
        self.client = client
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        purpose: str = "reply",
    ) -> AsyncIterator[LlmEvent]:
        """Stream the model's events; closing this generator closes the HTTP stream at once.

        ``tools``, ``response_format``, ``max_tokens`` and ``temperature`` go to the client as given;
        ``max_tokens``/``temperature`` fall back to the agent's values when None.
        """
        stream = self.client.stream(
            messages,
            tools=tools,
            response_format=response_format,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            temperature=self.temperature if temperature is None else temperature,
            purpose=purpose,
        )
        loop = asyncio.get_running_loop()
        try:
            async for ev in stream:
                if isinstance(ev, TextDelta):
                    yield LlmDelta(ev.text, stream.last_event_at or loop.time())
                elif isinstance(ev, ToolCall):
                    yield LlmToolCall(ev.name, ev.arguments_json, stream.last_event_at or loop.time())
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
