"""A wire-faithful ElevenLabs WebSocket TTS emulator (aiohttp), with a latency model and faults.

Serves ``/v1/text-to-speech/{voice_id}/stream-input`` (single-context) and
``/v1/text-to-speech/{voice_id}/multi-stream-input`` (multi-context) per docs/providers.md 4.4.

Rules (what a client can rely on):

1. Query: ``model_id``, ``output_format`` (default ``mp3_44100_128``), ``inactivity_timeout``
   (s, default 20, max 180), ``auto_mode``, ``sync_alignment``; others are recorded, not used.
   mp3/opus are refused with an error frame and close 1008 (the emulator has no encoder).
2. Auth, when the emulator has an ``api_key``: the ``xi-api-key`` header (a wrong one gets HTTP
   401 before the upgrade), else ``xi_api_key``/``xi-api-key``/``authorization`` in the first
   message, else an error frame and close 1008.
3. Text is buffered per context and generated (a) on ``flush``, (b) on every message in
   ``auto_mode``, (c) when the buffer ends a sentence (``.!?``), or a clause (``,;:``) once it
   holds 50+ characters, (d) when it reaches the next ``chunk_length_schedule`` threshold
   (default 120, 160, 250, 290) — cut at the last space.
4. Timing (from the ``Profile``): a generation's first chunk goes out ``tts_ttfb_ms`` after the
   text that triggered it; chunks carry ``tts_chunk_ms`` of audio and are produced
   ``tts_realtime_factor`` x faster than real time; every delay gets +-``jitter_ms`` from the
   injected rng. Generations of one context are sent in order.
5. Audio is the synthetic voice of ``voice.py`` (duration follows the text), encoded per
   ``output_format``. With ``sync_alignment=true`` every chunk carries ``alignment`` and
   ``normalizedAlignment`` (chars, charStartTimesMs, charDurationsMs; times relative to the
   chunk).
6. Single-context: the first message's text must be ``" "``; ``{"text": ""}`` flushes, then
   ``{"isFinal": true}`` follows the last audio and the socket closes (1000).
7. Multi-context: a context is created by the first message naming its id (``"default"``
   when a message has none); ``voice_settings``/``generation_config`` on a later message, or a
   sixth active context, get an error frame and close 1008 (``max_active_conversations``).
   ``close_context`` on a context that got the end-of-input marker ``{"text": "", "flush":
   true}`` lets its audio finish, then sends ``{"isFinal": true, "contextId"}``; on any other
   context it stops generation at once (no audio after it) and sends ``isFinal``. This is our
   reading of pipecat ("close_context so isFinal arrives right after the last audio byte") and
   of the docs ("generation for it stops"); the real service's exact behaviour is UNCONFIRMED.
   ``{"text": ""}`` is a keepalive; ``close_socket`` finishes flushing contexts, then closes.
8. Inactivity: no message for ``inactivity_timeout`` seconds closes the socket (1008). In
   multi-context that holds while no context is open; each context times out on its own: one
   that no message has named for
   ``inactivity_timeout`` seconds (and that has not had its end-of-input marker) is closed, its
   generation stopped and ``isFinal`` sent for it; a keepalive ``{"text": "", "context_id"}``
   resets its clock. (SDK ``KeepContextAlive``: "keep a specific context alive by resetting its
   inactivity timeout"; what the service sends when a context times out is UNCONFIRMED.)
9. Faults (``.faults``, mutable at any time) apply to the next connection that reaches them and
   then disarm: drop the TCP connection after N audio chunks, stall before a chunk, or send an
   error frame and close 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from dataclasses import dataclass, field
from typing import Final

import msgspec
from aiohttp import WSMsgType, web

from mediasrv.codec import alaw_encode, ulaw_encode
from mediasrv.lab.emulators.hosting import Listener, listen, serve_until_cancelled
from mediasrv.lab.emulators.voice import char_durations_ms, render_pcm
from mediasrv.profiles import Profile, get_profile
from mediasrv.providers.elevenlabs.messages import (
    OUTPUT_FORMATS,
    AlignmentOut,
    ClientMessage,
    ErrorOut,
    FinalOut,
    ServerAudioOut,
    decode_client_message,
    encode,
)

__all__ = ["ElevenLabsEmulator", "ElevenLabsFaults", "EmulatorSession", "serve"]

MAX_CONTEXTS: Final = 5
DEFAULT_SCHEDULE: Final = (120, 160, 250, 290)
CLAUSE_MIN_CHARS: Final = 50
DEFAULT_CONTEXT: Final = "default"
POLICY_VIOLATION: Final = 1008


@dataclass
class ElevenLabsFaults:
    """Faults to inject; each fires once (on whichever connection reaches it), then disarms."""

    drop_after_chunks: int | None = None
    """Abort the TCP connection (no close frame) after this many audio chunks on a connection."""
    stall_before_chunk: int | None = None
    """Pause ``stall_ms`` before sending this audio chunk number (1-based) on a connection."""
    stall_ms: int = 0
    error_after_chunks: int | None = None
    """Send an error frame and close 1008 after this many audio chunks on a connection."""
    error_message: str = "emulated server error"


@dataclass
class EmulatorSession:
    """What one connection did (read it in tests)."""

    path: str
    voice_id: str
    multi: bool
    query: dict[str, str]
    headers_key: str | None
    messages: list[ClientMessage] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)
    """Context ids in the order they were created."""
    generated_text: dict[str, str] = field(default_factory=dict)
    audio_chunks: int = 0
    audio_ms: dict[str, float] = field(default_factory=dict)
    finals: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    """Contexts closed for inactivity (rule 8)."""
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None


class _Refused(Exception):
    """A client broke the protocol: send an error frame and close 1008."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class _Stopped(Exception):
    """The connection is gone (or a fault ended it): the worker stops sending."""


class _Ctx:
    """One context on one connection."""

    def __init__(self, context_id: str, schedule: tuple[int, ...]) -> None:
        self.id = context_id
        self.buffer = ""
        self.generations = 0
        self.schedule = schedule
        self.ended = False
        self.last_input_at = asyncio.get_running_loop().time()
        self.queue: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


class _Connection:
    """Protocol logic of one accepted socket."""

    def __init__(
        self,
        emu: ElevenLabsEmulator,
        ws: web.WebSocketResponse,
        request: web.Request,
        record: EmulatorSession,
    ) -> None:
        self.emu = emu
        self.ws = ws
        self.request = request
        self.record = record
        q = record.query
        self.output_format = q.get("output_format", "mp3_44100_128")
        self.auto_mode = q.get("auto_mode", "false").lower() == "true"
        self.sync_alignment = q.get("sync_alignment", "false").lower() == "true"
        self.timeout_s = float(q.get("inactivity_timeout", "20"))
        self.contexts: dict[str, _Ctx] = {}
        self.authed = emu.api_key is None or record.headers_key == emu.api_key
        self.send_lock = asyncio.Lock()
        self.closing = False
        self.first_message = True
        self.draining = 0

    # ------------------------------------------------------------------ receive side

    async def run(self) -> None:
        watchdog = asyncio.get_running_loop().create_task(self._expire_idle_contexts())
        try:
            self._check_query()
            await self._receive_loop()
        except _Refused as exc:
            await self.refuse(exc.error, exc.message)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            for ctx in self.contexts.values():
                if ctx.task is not None:
                    ctx.task.cancel()
            for ctx in self.contexts.values():
                if ctx.task is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await ctx.task
            if not self.ws.closed:
                await self.ws.close()
            self.record.close_code = self.record.close_code or self.ws.close_code

    def _check_query(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise _Refused(
                "unsupported_output_format",
                f"output_format {self.output_format!r} is not supported by the emulator; "
                "use pcm_*, ulaw_8000 or alaw_8000",
            )
        if not 0 < self.timeout_s <= 180:
            raise _Refused("invalid_inactivity_timeout", "inactivity_timeout must be 1-180 seconds")

    async def _receive_loop(self) -> None:
        while not self.ws.closed and not self.closing:
            # Multi-context: while contexts are open, each one times out on its own (rule 8).
            timeout_s = None if self.record.multi and self.contexts else self.timeout_s
            try:
                msg = await self.ws.receive(timeout=timeout_s)
            except TimeoutError:
                raise _Refused("input_timeout_exceeded", "no input for inactivity_timeout seconds") from None
            if msg.type is not WSMsgType.TEXT:
                return
            try:
                message = decode_client_message(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _Refused("invalid_message", f"could not parse message: {exc}") from None
            self.record.messages.append(message)
            self._check_auth(message)
            if self.record.multi:
                await self._on_multi(message)
            else:
                await self._on_single(message)
            self.first_message = False

    async def _expire_idle_contexts(self) -> None:
        """Rule 8: close each multi-context context no message has named for ``timeout_s``."""
        if not self.record.multi:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(_Stopped, ConnectionError):
            while not self.ws.closed:
                idle = [c for c in self.contexts.values() if not c.ended]
                due = min(
                    (c.last_input_at + self.timeout_s for c in idle), default=loop.time() + self.timeout_s
                )
                await asyncio.sleep(max(0.01, due - loop.time()))
                now = loop.time()
                for ctx in [c for c in self.contexts.values() if not c.ended]:
                    if now >= ctx.last_input_at + self.timeout_s:
                        self.record.timed_out.append(ctx.id)
                        await self._close_context(ctx)

    def _check_auth(self, message: ClientMessage) -> None:
        if self.authed:
            return
        key = message.xi_api_key or message.xi_api_key_dash or message.authorization
        if self.first_message and key is not None and key.removeprefix("Bearer ") == self.emu.api_key:
            self.authed = True
            return
        raise _Refused("invalid_api_key", "missing or invalid xi-api-key")

    async def _on_single(self, message: ClientMessage) -> None:
        ctx = self.contexts.get(DEFAULT_CONTEXT)
        if ctx is None:
            if message.text != " ":
                raise _Refused("invalid_message", 'the first message must have text " " (a single space)')
            self._open(DEFAULT_CONTEXT, message)
            return
        if message.voice_settings is not None or message.generation_config is not None:
            raise _Refused("invalid_message", "voice_settings are only allowed in the first message")
        if message.text == "":
            # Single-context EOS: flush, then isFinal, then close (docs/providers.md 4.1).
            self._generate(ctx, force=True)
            ctx.ended = True
            ctx.queue.put_nowait(None)
            self.closing = True
            if ctx.task is not None:
                await ctx.task
            await self.ws.close()
            return
        if message.text and message.text != " ":
            ctx.buffer += message.text
        self._generate(ctx, force=bool(message.flush or message.try_trigger_generation and self.auto_mode))

    async def _on_multi(self, message: ClientMessage) -> None:
        if message.close_socket:
            await self._close_socket()
            return
        cid = message.context_id
        if cid is None and message.text == "" and not message.flush:
            return  # socket-level keepalive
        cid = cid or DEFAULT_CONTEXT
        ctx = self.contexts.get(cid)
        if ctx is None:
            if message.close_context:
                return
            ctx = self._open(cid, message)
        elif message.voice_settings is not None or message.generation_config is not None:
            raise _Refused(
                "invalid_message",
                "voice_settings/generation_config allowed only on a context's first message",
            )
        ctx.last_input_at = asyncio.get_running_loop().time()
        if message.close_context:
            await self._close_context(ctx)
            return
        text = message.text
        if text == "" and message.flush:
            ctx.ended = True  # livekit's end-of-input marker
        elif text and not (text == " " and ctx.generations == 0 and not ctx.buffer):
            ctx.buffer += text
        self._generate(ctx, force=bool(message.flush))

    def _open(self, cid: str, message: ClientMessage) -> _Ctx:
        if len(self.contexts) + self.draining >= MAX_CONTEXTS:
            raise _Refused(
                "max_active_conversations", f"at most {MAX_CONTEXTS} concurrent contexts per connection"
            )
        config = message.generation_config
        schedule = (
            tuple(config.chunk_length_schedule)
            if config and config.chunk_length_schedule
            else DEFAULT_SCHEDULE
        )
        ctx = _Ctx(cid, schedule)
        self.contexts[cid] = ctx
        self.record.contexts.append(cid)
        ctx.task = asyncio.get_running_loop().create_task(self._worker(ctx))
        return ctx

    async def _close_context(self, ctx: _Ctx) -> None:
        if ctx.ended:
            self._generate(ctx, force=True)
            ctx.queue.put_nowait(None)  # drain, then isFinal (rule 7)
            self.contexts.pop(ctx.id, None)
            self._keep_draining(ctx)
            return
        self.contexts.pop(ctx.id, None)
        if ctx.task is not None:
            ctx.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ctx.task
        await self._send_final(ctx.id)

    def _keep_draining(self, ctx: _Ctx) -> None:
        """A gracefully closed context keeps its slot until its isFinal is sent."""
        if ctx.task is not None:
            self.draining += 1
            self.emu._draining.add(ctx.task)
            ctx.task.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task[None]) -> None:
        self.draining -= 1
        self.emu._draining.discard(task)

    async def _close_socket(self) -> None:
        self.closing = True
        for ctx in list(self.contexts.values()):
            self._generate(ctx, force=True)
            ctx.queue.put_nowait(None)
        for ctx in list(self.contexts.values()):
            if ctx.task is not None:
                await ctx.task
        await self.ws.close()

    def _generate(self, ctx: _Ctx, *, force: bool) -> None:
        """Move text from the buffer to the generation queue when a trigger fires (rule 3)."""
        buffer = ctx.buffer
        if not buffer.strip():
            return
        stripped = buffer.rstrip()
        threshold = ctx.schedule[min(ctx.generations, len(ctx.schedule) - 1)]
        if force or self.auto_mode or stripped[-1] in ".!?":
            cut = len(buffer)
        elif stripped[-1] in ",;:" and len(stripped) >= CLAUSE_MIN_CHARS:
            cut = len(buffer)
        elif len(buffer) >= threshold:
            cut = buffer.rfind(" ") + 1 or len(buffer)
        else:
            return
        ctx.buffer = buffer[cut:]
        ctx.generations += 1
        ctx.queue.put_nowait((buffer[:cut], asyncio.get_running_loop().time()))

    # ------------------------------------------------------------------ send side

    async def _worker(self, ctx: _Ctx) -> None:
        """Render and send this context's generations in order (rules 4-5)."""
        with contextlib.suppress(_Stopped, ConnectionError):
            await self._generations(ctx)

    async def _generations(self, ctx: _Ctx) -> None:
        loop = asyncio.get_running_loop()
        profile, rng = self.emu.profile, self.emu.rng
        rate_hz = OUTPUT_FORMATS[self.output_format]
        while (item := await ctx.queue.get()) is not None:
            text, triggered_at = item
            pcm = render_pcm(text, rate_hz)
            durations = char_durations_ms(text)
            await asyncio.sleep(
                max(0.0, triggered_at + self._delay_s(profile.tts_ttfb_ms, rng) - loop.time())
            )
            chunk_samples = max(1, rate_hz * profile.tts_chunk_ms // 1000)
            for start in range(0, len(pcm), chunk_samples):
                piece = pcm[start : start + chunk_samples]
                alignment = self._alignment(
                    text, durations, start * 1000 / rate_hz, len(piece) * 1000 / rate_hz
                )
                await self._send_audio(
                    ctx.id, self._encode(piece.tobytes()), len(piece) * 1000 / rate_hz, alignment
                )
                produce_ms = len(piece) * 1000 / rate_hz / profile.tts_realtime_factor
                await asyncio.sleep(self._delay_s(produce_ms, rng))
            self.record.generated_text[ctx.id] = self.record.generated_text.get(ctx.id, "") + text
        if self.record.multi:
            await self._send_final(ctx.id)
        elif not self.ws.closed:
            await self._send(encode(FinalOut(isFinal=True)))

    def _delay_s(self, ms: float, rng: random.Random) -> float:
        jitter = self.emu.profile.jitter_ms
        return max(0.0, ms + rng.uniform(-jitter, jitter)) / 1000.0

    def _encode(self, pcm16: bytes) -> bytes:
        if self.output_format == "ulaw_8000":
            return ulaw_encode(pcm16)
        if self.output_format == "alaw_8000":
            return alaw_encode(pcm16)
        return pcm16

    def _alignment(
        self, text: str, durations: list[int], start_ms: float, length_ms: float
    ) -> AlignmentOut | None:
        if not self.sync_alignment:
            return None
        chars: list[str] = []
        starts: list[float] = []
        lengths: list[float] = []
        t = 0.0
        for ch, d in zip(text, durations, strict=True):
            if start_ms <= t < start_ms + length_ms:
                chars.append(ch)
                starts.append(round(t - start_ms))
                lengths.append(d)
            t += d
        return AlignmentOut(chars=chars, charStartTimesMs=starts, charDurationsMs=lengths)

    async def _send_audio(
        self, cid: str, audio: bytes, audio_ms: float, alignment: AlignmentOut | None
    ) -> None:
        faults, n = self.emu.faults, self.record.audio_chunks + 1
        if faults.stall_before_chunk is not None and n >= faults.stall_before_chunk:
            faults.stall_before_chunk = None
            await asyncio.sleep(faults.stall_ms / 1000)
        message = ServerAudioOut(
            audio=audio,
            contextId=cid if self.record.multi else None,
            alignment=alignment,
            normalizedAlignment=alignment,
        )
        await self._send(encode(message))
        self.record.audio_chunks = n
        self.record.audio_ms[cid] = self.record.audio_ms.get(cid, 0.0) + audio_ms
        if faults.drop_after_chunks is not None and n >= faults.drop_after_chunks:
            faults.drop_after_chunks = None
            self.record.close_code = 1006
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            raise _Stopped
        if faults.error_after_chunks is not None and n >= faults.error_after_chunks:
            faults.error_after_chunks = None
            await self.refuse("emulated_error", faults.error_message)
            raise _Stopped

    async def _send_final(self, cid: str) -> None:
        self.record.finals.append(cid)
        await self._send(encode(FinalOut(isFinal=True, contextId=cid)))

    async def _send(self, data: bytes) -> None:
        if self.ws.closed:
            raise _Stopped
        async with self.send_lock:
            await self.ws.send_str(data.decode())

    async def refuse(self, error: str, message: str) -> None:
        """Send an error frame, then close with 1008 (policy violation)."""
        self.record.errors.append(error)
        self.record.close_code = POLICY_VIOLATION
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(
                encode(ErrorOut(error=error, message=message, code=POLICY_VIOLATION)).decode()
            )
        await self.ws.close(code=POLICY_VIOLATION, message=message[:120].encode())


class ElevenLabsEmulator:
    """The emulator server. Start it, point a client at ``.url``, read ``.sessions``.

    Args:
        profile: latency model (``tts_ttfb_ms``, ``tts_chunk_ms``, ``tts_realtime_factor``,
            ``jitter_ms``).
        api_key: when set, clients must present it (rule 2).
        rng: jitter source; ``random.Random(0)`` when omitted (deterministic).
    """

    def __init__(
        self, *, profile: Profile, api_key: str | None = None, rng: random.Random | None = None
    ) -> None:
        self.profile = profile
        self.api_key = api_key
        self.rng = rng or random.Random(0)
        self.faults = ElevenLabsFaults()
        self.sessions: list[EmulatorSession] = []
        self.url = ""
        self._listener: Listener | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._draining: set[asyncio.Task[None]] = set()

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Listen on ``host:port`` (0 = any free port).

        Args:
            host: interface to bind.
            port: TCP port; 0 picks a free one.
            ssl_context: serve TLS (``wss://``), e.g. for clients that force ``wss``.

        Returns:
            The base URL, e.g. ``ws://127.0.0.1:54321``.
        """
        app = web.Application()
        app.router.add_get("/v1/text-to-speech/{voice_id}/stream-input", self._handle)
        app.router.add_get("/v1/text-to-speech/{voice_id}/multi-stream-input", self._handle)
        self._listener = await listen(app, host, port, ssl_context=ssl_context)
        self.url = f"{'wss' if ssl_context else 'ws'}://{self._listener.host}:{self._listener.port}"
        return self.url

    async def close(self) -> None:
        """Close every connection and stop listening (idempotent)."""
        for task in list(self._draining):
            task.cancel()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"emulator shutting down")
        if self._listener is not None:
            await self._listener.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        header_key = request.headers.get("xi-api-key")
        if header_key is None and "authorization" in request.headers:
            header_key = request.headers["authorization"].removeprefix("Bearer ")
        if self.api_key is not None and header_key is not None and header_key != self.api_key:
            raise web.HTTPUnauthorized(text="invalid xi-api-key")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        record = EmulatorSession(
            path=request.path,
            voice_id=request.match_info["voice_id"],
            multi=request.path.endswith("/multi-stream-input"),
            query=dict(request.query),
            headers_key=header_key,
        )
        self.sessions.append(record)
        self._sockets.add(ws)
        try:
            await _Connection(self, ws, request, record).run()
        finally:
            self._sockets.discard(ws)
        return ws


async def serve(profile_name: str, host: str, port: int) -> None:
    """Run an emulator with the named profile until cancelled, printing its URL first."""
    emulator = ElevenLabsEmulator(profile=get_profile(profile_name))
    await serve_until_cancelled(emulator, host, port, lambda url: f"elevenlabs emulator listening on {url}")
