"""Sans-I/O core of one ElevenLabs multi-context TTS session (one per call).

Theory of operation
-------------------
The caller (the call layer, through ``client.py``) names *replies*; each reply is one
ElevenLabs context. The core turns caller actions into wire frames (``data_to_send()``) and
server frames into events (``events_received()``):

* ``AudioChunk(context_id, ulaw, audio_ms, first)``: 8 kHz mu-law, ready for the Telnyx pacer,
  emitted for every server audio frame the moment it is received (never held for a sentence);
* ``ContextDone(context_id, cancelled)``: the reply's audio is complete (server ``isFinal``),
  or the caller cancelled it (barge-in);
* ``TtsError(...)``: the server reported an error, or sent something we cannot parse.

Rules:

1. **At most 5 active contexts per connection** (docs/providers.md 4.2; the server answers a sixth
   with ``max_active_conversations`` and closes with 1008). A context is active from its init
   frame until its ``isFinal`` (graceful end) or until the caller cancels it. Opening a sixth
   raises ``LocalProtocolError``: the server never sees it.
2. Contexts are initialised lazily: ``new_context()`` only names a reply; the init frame
   (``{"text": " ", "context_id", voice_settings, generation_config}``) goes out with its first
   text, so voice settings always ride on the context's first message (pipecat: a keepalive
   before the init makes the later init fail with 1008).
3. Barge-in (``close_context``) is final for the caller at once: the core sends
   ``close_context``, reports ``ContextDone(cancelled=True)`` and from then on drops (and
   counts) every audio frame still arriving for that context id (docs/providers.md 4.2 recipe:
   "drop any of its audio still queued locally").
4. A normal end (``end``) sends the livekit end-of-input flush ``{"text": "", "flush": true}``
   and then ``close_context``, so the server reports ``isFinal`` right after the last audio
   byte (pipecat ``on_turn_context_completed``).
5. Audio leaves as 8 kHz mu-law: ``ulaw_8000`` is passed through untouched (the zero-transcode
   telephony path, docs/providers.md 6); ``pcm_*`` goes through one ``Resampler`` per context and
   ``ulaw_encode``; the resampler's tail is flushed when the context finishes.
6. **Resume after a dropped socket.** ``connection_lost()`` forgets every wire id;
   ``connection_made()`` re-opens each unfinished context under a new wire id (mapped back to
   the caller's id) and resends the text not yet voiced. With alignment the core knows how many
   characters were voiced; it resumes at the start of the word being spoken and skips the audio
   of that word already delivered. Without alignment it resends the whole text and skips as
   much audio as it had already delivered. Either way the caller sees one continuous reply.
7. Time is an input: every entry point that needs it takes ``now`` (monotonic
   seconds). TTFB is ``first audio now - first text now`` per context. Keepalives follow
   ``next_deadline()`` / ``handle_timer(now)``.

The alignment bookkeeping assumes the server's ``alignment.chars`` walk the text we sent,
character for character (true of the emulator; ElevenLabs documents the non-normalized
``alignment`` as "characters in the text"). A mismatch only shifts the resume point.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from mediasrv.codec import FRAME_MS, Resampler
from mediasrv.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from mediasrv.providers.elevenlabs.messages import (
    OUTPUT_FORMATS,
    Alignment,
    CloseContext,
    CloseSocket,
    FlushContext,
    GenerationConfig,
    InitContext,
    KeepAlive,
    SendText,
    ServerMessage,
    VoiceSettings,
    decode_server_message,
    encode,
)

__all__ = [
    "CLIENT_OUTPUT_FORMATS",
    "MAX_ACTIVE_CONTEXTS",
    "AudioChunk",
    "ContextDone",
    "ContextState",
    "ContextStats",
    "ElevenLabsStream",
    "TtsError",
    "TtsEvent",
]

MAX_ACTIVE_CONTEXTS: Final = 5
"""docs/providers.md 4.2: "At most 5 concurrent contexts per connection"."""

TELNYX_RATE_HZ: Final = 8000
ULAW_BYTES_PER_MS: Final = TELNYX_RATE_HZ // 1000

CLIENT_OUTPUT_FORMATS: Final = ("ulaw_8000", "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100")
"""Formats the core can turn into 8 kHz mu-law (alaw/mp3/opus are refused at construction)."""


class ContextState(enum.Enum):
    """Lifecycle of one reply's context, as the caller sees it."""

    OPEN = "open"
    """Named; accepts text (the init frame goes out with the first text)."""
    CLOSING = "closing"
    """``end()`` sent: the server is finishing the audio; ``isFinal`` will close it."""
    CLOSED = "closed"
    """Done (``isFinal``) or cancelled; late audio for it is dropped and counted."""


class AudioChunk(msgspec.Struct, frozen=True, kw_only=True):
    """Audio for a reply, as 8 kHz mu-law bytes ready for Telnyx ``media`` frames."""

    context_id: str
    ulaw: bytes
    audio_ms: float
    first: bool
    """True for the reply's first chunk (its TTFB moment)."""


class ContextDone(msgspec.Struct, frozen=True, kw_only=True):
    """No more audio will come for this reply."""

    context_id: str
    cancelled: bool = False
    """True when the caller cancelled it (barge-in) or it failed."""


class TtsError(msgspec.Struct, frozen=True, kw_only=True):
    """The server reported an error, or a frame could not be parsed."""

    context_id: str | None
    error: str
    message: str = ""
    code: int | str | None = None


TtsEvent = AudioChunk | ContextDone | TtsError


class ContextStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one reply's accounting (``ElevenLabsStream.stats``)."""

    context_id: str
    state: ContextState
    text_chars_sent: int
    chars_voiced: int
    """From alignment (0 when the server sends none)."""
    audio_ms_received: float
    """Audio received from the server, in its output format (includes dropped/skipped audio)."""
    audio_ms_delivered: float
    """Mu-law audio handed to the caller."""
    ttfb_ms: float | None
    dropped_frames: int
    resumes: int


class _Converter:
    """Server audio -> 8 kHz mu-law for one context (rule 5).

    ``pcm_*`` is cut into whole 20 ms frames, which take the codec's fused fast path; a
    sub-frame remainder (< 20 ms) waits for the next chunk or the flush. The resampler's
    group delay is compensated (its first ``lead`` output samples are dropped and only
    ``lead`` samples of its tail are kept), so T ms of PCM become exactly T ms of mu-law.
    """

    def __init__(self, output_format: str) -> None:
        rate_hz = OUTPUT_FORMATS[output_format]
        self._passthrough = output_format == "ulaw_8000"
        self._resampler = Resampler(rate_hz, TELNYX_RATE_HZ)
        self._frame_bytes = rate_hz * 2 * FRAME_MS // 1000
        self._pending = bytearray()
        self._lead = round(self._resampler.delay_ms * ULAW_BYTES_PER_MS)
        self._to_trim = self._lead
        self.bytes_per_ms = ULAW_BYTES_PER_MS if self._passthrough else rate_hz * 2 / 1000

    def convert(self, audio: bytes) -> bytes:
        if self._passthrough:
            return audio
        self._pending += audio
        whole = len(self._pending) - len(self._pending) % self._frame_bytes
        if not whole:
            return b""
        view = memoryview(self._pending)
        out = b"".join(
            self._resampler.process_ulaw(bytes(view[i : i + self._frame_bytes]))
            for i in range(0, whole, self._frame_bytes)
        )
        view.release()
        del self._pending[:whole]
        return self._trim(out)

    def _trim(self, ulaw: bytes) -> bytes:
        if self._to_trim:
            cut = min(self._to_trim, len(ulaw))
            self._to_trim -= cut
            ulaw = ulaw[cut:]
        return ulaw

    def flush(self) -> bytes:
        if self._passthrough:
            return b""
        rest = bytes(self._pending[: len(self._pending) & ~1])
        self._pending.clear()
        out = self._resampler.process_ulaw(rest) if rest else b""
        out = self._trim(out + self._resampler.flush_ulaw()[: self._lead])
        self._to_trim = self._lead
        return out

    def reset(self) -> None:
        self._pending.clear()
        self._resampler.reset()
        self._to_trim = self._lead


class _Context:
    """Per-reply bookkeeping (private; callers read ``ContextStats``)."""

    __slots__ = (
        "alignment_seen",
        "caller_id",
        "converter",
        "delivered_bytes",
        "dropped",
        "ended",
        "first_audio_at",
        "first_text_at",
        "flushed_upto",
        "init_sent",
        "last_sent_at",
        "lost",
        "received_ms",
        "resumes",
        "skip_bytes",
        "state",
        "wire_ms",
        "word_start_ms",
        "text",
        "voiced_chars",
        "wire_id",
        "word_start",
    )

    def __init__(self, caller_id: str, output_format: str) -> None:
        self.caller_id = caller_id
        self.wire_id = caller_id
        self.state = ContextState.OPEN
        self.init_sent = False
        self.lost = False
        self.ended = False
        self.text = ""
        self.flushed_upto = 0
        self.first_text_at: float | None = None
        self.first_audio_at: float | None = None
        self.last_sent_at = 0.0
        self.received_ms = 0.0
        self.delivered_bytes = 0
        self.skip_bytes = 0
        self.alignment_seen = False
        self.voiced_chars = 0
        self.word_start = 0
        self.wire_ms = 0.0
        """Audio ms received under the current wire id (the alignment timeline)."""
        self.word_start_ms = 0.0
        """Where, on that timeline, the word being spoken began."""
        self.dropped = 0
        self.resumes = 0
        self.converter = _Converter(output_format)


class ElevenLabsStream:
    """Multi-context TTS session core: caller actions in, wire frames and events out.

    Drive it like this (the shell in ``client.py`` does):

    * caller actions: ``new_context``, ``send_text``, ``flush``, ``end``, ``close_context``;
      after each, write every frame of ``data_to_send()`` to the socket as a text frame;
    * every received frame: ``receive_message(data, now)``, then dispatch ``events_received()``;
    * timers: sleep until ``next_deadline()``, then ``handle_timer(now)`` (keepalives);
    * socket dropped: ``connection_lost()``; new socket open: ``connection_made(now)`` then
      write ``data_to_send()`` (the resumed replies).

    Args:
        output_format: the ``output_format`` query value the socket was opened with.
        voice_settings: sent on each context's init frame.
        generation_config: sent on each context's init frame.
        keepalive_interval_s: idle time after which an open context (or an idle socket) gets a
            keepalive; keep it well under the server's ``inactivity_timeout`` (20 s default).
        xi_api_key: put the key in each init frame too (only for servers that want it there;
            the client sends the ``xi-api-key`` header).

    Raises:
        ConfigError: ``output_format`` cannot be turned into mu-law here.
    """

    def __init__(
        self,
        output_format: str = "ulaw_8000",
        *,
        voice_settings: VoiceSettings | None = None,
        generation_config: GenerationConfig | None = None,
        keepalive_interval_s: float = 10.0,
        xi_api_key: str | None = None,
    ) -> None:
        if output_format not in CLIENT_OUTPUT_FORMATS:
            raise ConfigError(
                f"output_format: {output_format!r} is not supported; use one of {CLIENT_OUTPUT_FORMATS}"
            )
        self.output_format = output_format
        self._voice_settings = voice_settings
        self._generation_config = generation_config
        self._keepalive_s = keepalive_interval_s
        self._xi_api_key = xi_api_key
        self._contexts: dict[str, _Context] = {}
        self._wire: dict[str, _Context] = {}
        self._out: list[bytes] = []
        self._events: list[TtsEvent] = []
        self._connected = True
        self._last_socket_send = 0.0
        self._next_id = 0
        self.dropped_frames = 0
        """Audio frames dropped because their context was closed or unknown."""
        self.protocol_errors = 0
        self.last_protocol_error: RemoteProtocolError | None = None

    # ------------------------------------------------------------------ caller actions

    def new_context(self, context_id: str | None = None) -> str:
        """Name a new reply. Nothing is sent until its first text (rule 2).

        Args:
            context_id: the id to use; a fresh ``ctxN`` id when omitted. An id may be reused
                once its previous context is CLOSED.

        Returns:
            The context id to pass to ``send_text`` / ``end`` / ``close_context``.

        Raises:
            LocalProtocolError: the id names a context that is still open or closing.
        """
        if context_id is None:
            self._next_id += 1
            context_id = f"ctx{self._next_id}"
        old = self._contexts.get(context_id)
        if old is not None and old.state is not ContextState.CLOSED:
            raise LocalProtocolError(f"elevenlabs: context {context_id!r} is still {old.state.value}")
        self._contexts[context_id] = _Context(context_id, self.output_format)
        return context_id

    def send_text(self, context_id: str, text: str, now: float, *, flush: bool = False) -> None:
        """Queue a piece of the reply's text (end pieces with a space, as the docs advise).

        Args:
            context_id: from ``new_context``.
            text: the next clause; empty text with ``flush`` is a plain flush.
            now: monotonic seconds (starts the TTFB clock on the first non-blank text).
            flush: force generation of everything buffered so far.

        Raises:
            LocalProtocolError: unknown or non-open context, or a sixth active context.
        """
        ctx = self._open_context(context_id)
        if not text:
            if flush:
                self.flush(context_id, now)
            return
        self._ensure_init(ctx, now)
        ctx.text += text
        if ctx.first_text_at is None and text.strip():
            ctx.first_text_at = now
        if flush:
            ctx.flushed_upto = len(ctx.text)
        self._send_ctx(ctx, SendText(text=text, context_id=ctx.wire_id, flush=flush), now)

    def flush(self, context_id: str, now: float) -> None:
        """Ask the server to generate the reply's buffered text now.

        Raises:
            LocalProtocolError: unknown or non-open context.
        """
        ctx = self._open_context(context_id)
        if not ctx.init_sent:
            return
        ctx.flushed_upto = len(ctx.text)
        self._send_ctx(ctx, FlushContext(context_id=ctx.wire_id), now)

    def end(self, context_id: str, now: float) -> None:
        """The reply's text is complete: flush it and close the context gracefully (rule 4).

        ``ContextDone`` follows the last audio chunk. A context that never got text is done
        at once.

        Raises:
            LocalProtocolError: unknown or non-open context.
        """
        ctx = self._open_context(context_id)
        ctx.ended = True
        if not ctx.init_sent:
            ctx.state = ContextState.CLOSED
            self._events.append(ContextDone(context_id=context_id))
            return
        ctx.state = ContextState.CLOSING
        ctx.flushed_upto = len(ctx.text)
        self._send_ctx(ctx, SendText(text="", context_id=ctx.wire_id, flush=True), now)
        self._send_ctx(ctx, CloseContext(context_id=ctx.wire_id), now)

    def close_context(self, context_id: str, now: float) -> None:
        """Barge-in: stop the reply now and drop its audio still arriving (rule 3).

        Idempotent: closing a CLOSED or unknown context does nothing.
        """
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.state is ContextState.CLOSED:
            return
        was_sent = ctx.init_sent and not ctx.lost
        ctx.state = ContextState.CLOSED
        ctx.converter.reset()
        if was_sent:
            self._send_ctx(ctx, CloseContext(context_id=ctx.wire_id), now)
        self._events.append(ContextDone(context_id=context_id, cancelled=True))

    def close_socket(self) -> None:
        """Queue ``{"close_socket": true}``: the server finishes flushing contexts, then closes."""
        if self._connected:
            self._out.append(encode(CloseSocket()))

    # ------------------------------------------------------------------ network input

    def receive_message(self, data: bytes | str, now: float) -> None:
        """Feed one server frame; then call ``events_received()``.

        Never raises for bad input: a frame we cannot parse becomes a ``TtsError`` event and
        is recorded in ``last_protocol_error`` (a protocol error is data, not a crash).
        """
        try:
            msg = decode_server_message(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.protocol_errors += 1
            self.last_protocol_error = RemoteProtocolError(f"elevenlabs: bad server frame: {exc}")
            self._events.append(TtsError(context_id=None, error="protocol_error", message=str(exc)))
            return
        ctx = self._wire.get(msg.ctx or "")
        if msg.error is not None:
            caller_id = ctx.caller_id if ctx is not None else None
            self._events.append(
                TtsError(context_id=caller_id, error=msg.error, message=msg.message or "", code=msg.code)
            )
        if msg.audio:
            self._receive_audio(ctx, msg, now)
        if msg.final and ctx is not None:
            self._receive_final(ctx)

    def _receive_audio(self, ctx: _Context | None, msg: ServerMessage, now: float) -> None:
        audio = msg.audio or b""
        if ctx is None or ctx.state is ContextState.CLOSED:
            self.dropped_frames += 1
            if ctx is not None:
                ctx.dropped += 1
            return
        chunk_ms = len(audio) / ctx.converter.bytes_per_ms
        ctx.received_ms += chunk_ms
        if ctx.first_audio_at is None:
            ctx.first_audio_at = now
        if msg.alignment is not None:
            self._track_alignment(ctx, msg.alignment, ctx.wire_ms)
        ctx.wire_ms += chunk_ms
        self._deliver(ctx, ctx.converter.convert(audio))

    def _track_alignment(self, ctx: _Context, alignment: Alignment, chunk_start_ms: float) -> None:
        """Advance the voiced-character count and remember where (in ms) the current word began."""
        durations = alignment.durations_ms()
        starts = alignment.starts_ms
        chars = alignment.characters
        if not chars:
            return  # an alignment without characters says nothing about where the reply is
        ctx.alignment_seen = True
        for i, char in enumerate(chars):
            if ctx.voiced_chars >= len(ctx.text):
                break
            ctx.voiced_chars += 1
            if char.isspace():
                ctx.word_start = ctx.voiced_chars
                start = starts[i] if i < len(starts) else 0.0
                ctx.word_start_ms = chunk_start_ms + start + (durations[i] if i < len(durations) else 0.0)

    def _deliver(self, ctx: _Context, ulaw: bytes) -> None:
        if ctx.skip_bytes:
            cut = min(ctx.skip_bytes, len(ulaw))
            ctx.skip_bytes -= cut
            ulaw = ulaw[cut:]
        if not ulaw:
            return
        first = ctx.delivered_bytes == 0
        ctx.delivered_bytes += len(ulaw)
        self._events.append(
            AudioChunk(
                context_id=ctx.caller_id, ulaw=ulaw, audio_ms=len(ulaw) / ULAW_BYTES_PER_MS, first=first
            )
        )

    def _receive_final(self, ctx: _Context) -> None:
        self._wire.pop(ctx.wire_id, None)
        if ctx.state is ContextState.CLOSED:
            return
        self._finish(ctx)

    def _finish(self, ctx: _Context) -> None:
        self._deliver(ctx, ctx.converter.flush())
        ctx.state = ContextState.CLOSED
        self._events.append(ContextDone(context_id=ctx.caller_id))

    # ------------------------------------------------------------------ connection lifecycle

    def connection_lost(self) -> None:
        """The socket is gone: forget wire ids and unsent frames; unfinished replies await resume."""
        self._connected = False
        self._out.clear()
        self._wire.clear()
        for ctx in self._contexts.values():
            if ctx.state is not ContextState.CLOSED and ctx.init_sent:
                ctx.lost = True

    def connection_made(self, now: float) -> None:
        """A (new) socket is open: resume every unfinished reply on it (rule 6).

        After this, write ``data_to_send()``; replies already complete are reported as events.
        """
        self._connected = True
        self._last_socket_send = now
        for ctx in list(self._contexts.values()):
            if ctx.lost and ctx.state is not ContextState.CLOSED:
                self._resume(ctx, now)

    def fail_unfinished(self, error: str, message: str = "", code: int | str | None = None) -> None:
        """Give up on every unfinished reply (the server refused us, or we cannot reconnect).

        Each gets ``TtsError`` then ``ContextDone(cancelled=True)``; late audio is dropped.
        """
        for ctx in self._contexts.values():
            if ctx.state is ContextState.CLOSED:
                continue
            ctx.state = ContextState.CLOSED
            ctx.lost = False
            ctx.converter.reset()
            self._events.append(TtsError(context_id=ctx.caller_id, error=error, message=message, code=code))
            self._events.append(ContextDone(context_id=ctx.caller_id, cancelled=True))

    def _resume(self, ctx: _Context, now: float) -> None:
        ctx.lost = False
        ctx.resumes += 1
        if ctx.alignment_seen:
            # The part of the current word already received is skipped in the resumed audio.
            start, skip_ms = ctx.word_start, max(0.0, ctx.wire_ms - ctx.word_start_ms)
        else:
            start, skip_ms = 0, ctx.delivered_bytes / ULAW_BYTES_PER_MS
        remaining = ctx.text[start:]
        if ctx.ended and not remaining.strip():
            self._finish(ctx)
            return
        ctx.wire_id = f"{ctx.caller_id}~{ctx.resumes}"
        ctx.voiced_chars = ctx.word_start = start
        ctx.wire_ms = ctx.word_start_ms = 0.0
        ctx.skip_bytes = round(skip_ms * ULAW_BYTES_PER_MS)
        ctx.init_sent = False
        self._ensure_init(ctx, now, check_limit=False)
        flushed = ctx.text[start : ctx.flushed_upto]
        pending = ctx.text[max(start, ctx.flushed_upto) :]
        if flushed:
            self._send_ctx(ctx, SendText(text=flushed, context_id=ctx.wire_id, flush=True), now)
        if pending:
            self._send_ctx(ctx, SendText(text=pending, context_id=ctx.wire_id), now)
        if ctx.ended:
            self._send_ctx(ctx, SendText(text="", context_id=ctx.wire_id, flush=True), now)
            self._send_ctx(ctx, CloseContext(context_id=ctx.wire_id), now)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` should run next (keepalives), or None while disconnected."""
        if not self._connected:
            return None
        due = [c.last_sent_at + self._keepalive_s for c in self._keepalive_contexts()]
        if not due:
            return self._last_socket_send + self._keepalive_s
        return min(due)

    def handle_timer(self, now: float) -> None:
        """Queue keepalives: ``{"text": "", "context_id"}`` per idle open context (docs/providers.md 4.2),
        or ``{"text": ""}`` on an idle socket with no open context (pipecat does the same)."""
        if not self._connected:
            return
        contexts = self._keepalive_contexts()
        for ctx in contexts:
            if now >= ctx.last_sent_at + self._keepalive_s:
                self._send_ctx(ctx, KeepAlive(context_id=ctx.wire_id), now)
        if not contexts and now >= self._last_socket_send + self._keepalive_s:
            self._out.append(encode(SendText(text="")))
            self._last_socket_send = now

    def _keepalive_contexts(self) -> list[_Context]:
        return [
            c for c in self._contexts.values() if c.state is ContextState.OPEN and c.init_sent and not c.lost
        ]

    # ------------------------------------------------------------------ outputs

    def events_received(self) -> list[TtsEvent]:
        """Return (and forget) the events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """Return (and forget) the JSON frames to write, in order, as WebSocket text frames."""
        out, self._out = self._out, []
        return out

    def stats(self, context_id: str) -> ContextStats:
        """Accounting for one reply (TTFB, text, voiced characters, audio).

        Raises:
            LocalProtocolError: unknown context id.
        """
        ctx = self._get(context_id)
        ttfb = None
        if ctx.first_audio_at is not None and ctx.first_text_at is not None:
            ttfb = (ctx.first_audio_at - ctx.first_text_at) * 1000.0
        return ContextStats(
            context_id=context_id,
            state=ctx.state,
            text_chars_sent=len(ctx.text),
            chars_voiced=ctx.voiced_chars,
            audio_ms_received=ctx.received_ms,
            audio_ms_delivered=ctx.delivered_bytes / ULAW_BYTES_PER_MS,
            ttfb_ms=ttfb,
            dropped_frames=ctx.dropped,
            resumes=ctx.resumes,
        )

    def active_contexts(self) -> int:
        """Contexts that count against the server's limit of 5 (rule 1)."""
        return sum(1 for c in self._contexts.values() if c.init_sent and c.state is not ContextState.CLOSED)

    def unfinished(self) -> list[str]:
        """Caller ids of replies that are open or closing."""
        return [c.caller_id for c in self._contexts.values() if c.state is not ContextState.CLOSED]

    # ------------------------------------------------------------------ helpers

    def _get(self, context_id: str) -> _Context:
        ctx = self._contexts.get(context_id)
        if ctx is None:
            raise LocalProtocolError(f"elevenlabs: unknown context {context_id!r}")
        return ctx

    def _open_context(self, context_id: str) -> _Context:
        ctx = self._get(context_id)
        if ctx.state is not ContextState.OPEN:
            raise LocalProtocolError(f"elevenlabs: context {context_id!r} is {ctx.state.value}")
        return ctx

    def _ensure_init(self, ctx: _Context, now: float, *, check_limit: bool = True) -> None:
        if ctx.init_sent:
            return
        if check_limit and self.active_contexts() >= MAX_ACTIVE_CONTEXTS:
            raise LocalProtocolError(
                f"elevenlabs: a {MAX_ACTIVE_CONTEXTS + 1}th active context would be refused by the server "
                "(max_active_conversations); end or close one first"
            )
        ctx.init_sent = True
        if not self._connected:
            ctx.lost = True  # opened while the socket is down: connection_made() sends it
            return
        self._wire[ctx.wire_id] = ctx
        init = InitContext(
            text=" ",
            context_id=ctx.wire_id,
            voice_settings=self._voice_settings,
            generation_config=self._generation_config,
            xi_api_key=self._xi_api_key,
        )
        self._send_ctx(ctx, init, now)

    def _send_ctx(self, ctx: _Context, message: msgspec.Struct, now: float) -> None:
        ctx.last_sent_at = now
        if self._connected and not ctx.lost:
            self._out.append(encode(message))
            self._last_socket_send = now
