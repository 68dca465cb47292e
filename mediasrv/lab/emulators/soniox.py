"""Soniox real-time STT emulator: a real WebSocket server (aiohttp) speaking the Soniox protocol.

What it does (``docs/providers.md`` 3.6):

* Serves the WebSocket on any path. Auth: ``Authorization: Bearer <key>`` on the upgrade or
  ``api_key`` in the first message; when the emulator has an ``api_key`` and neither matches it
  answers ``{"error_code":401,...}`` and closes. Both at once is refused too (400), as the vendor
  SDK documents.
* The first message must be a JSON config: ``model`` known and not retired, ``audio_format``
  known, raw formats need ``sample_rate`` and ``num_channels``, ``context`` an object (the
  current API's structured context; the SDK's ``RealtimeSTTConfig`` has no string form);
  otherwise 400 and close. ``null`` is accepted. An alias (``stt-rt-v4``) is served by its
  target, and refused once that target is retired (``retired_models``), as an alias whose
  target Soniox retires would be (UNCONFIRMED: the exact code and text of that refusal).
* Binary frames are audio; ``SonioxScript`` (the sans-I/O core) turns them into scripted tokens
  timed to the audio received. ``keepalive`` is ignored, ``finalize`` is answered (``<fin>``) after
  the profile's ``stt_finalize_ms``, an empty frame flushes, sends ``finished`` and closes 1000.
  No audio and no keepalive for ``idle_timeout_s`` (20 s) closes the session.
* Fault injection through the mutable ``faults`` (each fault fires once): drop the TCP connection
  after N ms of audio, stall results for a while, or send a 503 error and close.

Contract shared by every emulator: ``SonioxEmulator(profile=..., script=..., api_key=..., rng=...)``,
``await start(host, port) -> url``, ``await close()``, ``.url``, ``.faults``, ``.sessions``,
and the module-level ``serve(profile_name, host, port)`` used by ``mediasrv emulate soniox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Final

import msgspec
from aiohttp import WSMsgType, web
from aiohttp.log import access_logger

from mediasrv.lab.emulators.hosting import Listener, listen, serve_until_cancelled
from mediasrv.lab.emulators.soniox_script import ScriptUtterance, SonioxScript, SttScript
from mediasrv.profiles import Profile, get_profile
from mediasrv.providers.soniox.messages import (
    CONFIG_DECODER,
    CONTAINER_FORMATS,
    CONTROL_DECODER,
    MODEL_ALIASES,
    RAW_SAMPLE_BYTES,
    ConfigIn,
    ErrorMessage,
    ResultMessage,
    bytes_per_second,
    encode_text,
)

MODELS: Final = frozenset({"stt-rt-v6", "stt-rt-v5"})
"""Real-time models served (docs/providers.md, Soniox: v6 replaces v5, which Soniox retires)."""
RETIRED_MODELS: Final = frozenset({"stt-rt-preview", "stt-rt-preview-v2"})
"""2025 preview names (Soniox migration guide, Aug 2025); that they are refused now is UNCONFIRMED."""
IDLE_TIMEOUT_S: Final = 20.0


@dataclass
class SonioxFaults:
    """Faults to inject; each one fires once (in whichever session reaches it) and then clears itself.

    Attributes:
        drop_after_ms: abort the TCP connection once a session has received this much audio.
        error_after_ms: send ``error_code`` (503 by default) then close, after this much audio.
        error_code: the code sent by ``error_after_ms``.
        stall_after_ms: after this much audio, hold every result for ``stall_ms``.
        stall_ms: length of the stall.
    """

    drop_after_ms: int | None = None
    error_after_ms: int | None = None
    error_code: int = 503
    stall_after_ms: int | None = None
    stall_ms: int = 0


@dataclass
class SessionRecord:
    """What one connection did, for assertions."""

    auth: str = "none"
    config: ConfigIn | None = None
    audio_bytes: int = 0
    audio_ms: int = 0
    keepalives: int = 0
    finalizes: int = 0
    messages: list[ResultMessage | ErrorMessage] = field(default_factory=list)
    ended: str = "open"
    """``open``, ``finished``, ``error``, ``dropped``, ``client-closed`` or ``idle``."""


class _Outbox:
    """Results of one session, sent in order by one task, each not before its due time."""

    def __init__(self, ws: web.WebSocketResponse, record: SessionRecord) -> None:
        self._ws = ws
        self._record = record
        self._queue: asyncio.Queue[tuple[float, ResultMessage | ErrorMessage] | None] = asyncio.Queue()
        self.stall_until = 0.0
        self.task = asyncio.create_task(self._run(), name="soniox-emulator-outbox")

    def put(self, message: ResultMessage | ErrorMessage, delay_s: float = 0.0) -> None:
        self._queue.put_nowait((asyncio.get_running_loop().time() + delay_s, message))

    async def drain(self) -> None:
        self._queue.put_nowait(None)
        await self.task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self._queue.get()) is not None:
            due, message = item
            wait = max(due, self.stall_until) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._ws.closed:
                continue
            await self._ws.send_str(encode_text(message))
            self._record.messages.append(message)


class SonioxEmulator:
    """A wire-compatible Soniox real-time STT server on loopback.

    Args:
        profile: latency profile (partial lag, endpoint silence, finalize delay, jitter).
        script: the utterances it will "recognise" (more can be added with ``script.add``).
        api_key: if set, the key clients must present.
        rng: randomness for modelled delays.
        idle_timeout_s: close a session after this long with no audio and no keepalive.
        retired_models: models refused as retired (their aliases too); default: the 2025 previews.
    """

    def __init__(
        self,
        *,
        profile: Profile,
        script: SttScript | list[ScriptUtterance] | None = None,
        api_key: str | None = None,
        rng: random.Random | None = None,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        retired_models: frozenset[str] = RETIRED_MODELS,
    ) -> None:
        self.profile = profile
        self.retired_models = retired_models
        self.script = script if isinstance(script, SttScript) else SttScript(script or ())
        self.api_key = api_key
        self.rng = rng or random.Random(0)
        self.idle_timeout_s = idle_timeout_s
        self.faults = SonioxFaults()
        self.sessions: list[SessionRecord] = []
        self.url = ""
        self._listener: Listener | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.scripts: dict[str, SttScript] = {}
        """Per-call scripts, chosen by the session's ``client_reference_id`` (else ``script``)."""
        self._dropped: dict[str | None, SonioxScript] = {}  # last abnormal end, per reference id

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; return the ``ws://`` URL."""
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._listener = await listen(app, host, port, access_log=access_logger)
        self.url = f"ws://{self._listener.host}:{self._listener.port}/transcribe-websocket"
        return self.url

    async def close(self) -> None:
        """Close every session (1001) and stop serving. Idempotent."""
        for ws in list(self._sockets):
            await ws.close(code=1001)
        if self._listener is not None:
            await self._listener.close()

    async def __aenter__(self) -> SonioxEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- session

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=2**22)
        await ws.prepare(request)
        record = SessionRecord()
        self.sessions.append(record)
        self._sockets.add(ws)
        outbox = _Outbox(ws, record)
        try:
            core = await self._open_session(ws, request, record, outbox)
            if core is not None:
                await self._stream(ws, request, core, record, outbox)
        finally:
            self._sockets.discard(ws)
            outbox.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await outbox.task
            if not ws.closed:
                await ws.close()
        return ws

    async def _refuse(self, ws: web.WebSocketResponse, record: SessionRecord, code: int, text: str) -> None:
        error = ErrorMessage(error_code=code, error_message=text)
        await ws.send_str(encode_text(error))
        record.messages.append(error)
        record.ended = "error"
        await ws.close()

    async def _open_session(
        self, ws: web.WebSocketResponse, request: web.Request, record: SessionRecord, outbox: _Outbox
    ) -> SonioxScript | None:
        header = request.headers.get("Authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        if bearer is not None and self.api_key is not None and bearer != self.api_key:
            await self._refuse(ws, record, 401, "Invalid API key.")
            return None
        try:
            msg = await ws.receive(timeout=self.idle_timeout_s)
        except TimeoutError:
            record.ended = "idle"
            return None
        if msg.type != WSMsgType.TEXT:
            await self._refuse(ws, record, 400, "First message must be a JSON configuration.")
            return None
        try:
            config = CONFIG_DECODER.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._refuse(ws, record, 400, f"Invalid configuration: {exc}")
            return None
        record.config = config
        problem = self._check(config, bearer)
        if problem is not None:
            await self._refuse(ws, record, *problem)
            return None
        record.auth = "bearer" if bearer is not None else "api_key" if config.api_key else "none"
        audio_format = config.audio_format or "auto"
        ref = config.client_reference_id
        resume = self._dropped.pop(ref, None)
        return SonioxScript(
            profile=self.profile,
            script=self.scripts.get(ref or "", self.script),
            rng=self.rng,
            audio_format=audio_format,
            sample_rate=config.sample_rate or 16000,
            num_channels=config.num_channels or 1,
            endpoint_detection=bool(config.enable_endpoint_detection),
            resume_from=resume,
        )

    def _check(self, config: ConfigIn, bearer: str | None) -> tuple[int, str] | None:
        if self.api_key is not None:
            if bearer is not None and config.api_key is not None:
                return 400, "Send the API key either in the Authorization header or in the config, not both."
            if (bearer or config.api_key) != self.api_key:
                return 401, "Invalid or missing API key."
        target = MODEL_ALIASES.get(config.model or "", config.model)
        if config.model in self.retired_models or target in self.retired_models:
            served = ", ".join(sorted(MODELS - self.retired_models))
            return 400, f"Model {config.model!r} has been retired; use one of: {served}."
        if target not in MODELS:
            return 400, f"Invalid model: {config.model!r}."
        if isinstance(config.context, str):
            return 400, "Invalid context: expected an object (general, text, terms, translation_terms)."
        fmt = config.audio_format
        if fmt not in RAW_SAMPLE_BYTES and fmt not in CONTAINER_FORMATS:
            return 400, f"Invalid audio_format: {fmt!r}."
        if fmt in RAW_SAMPLE_BYTES and (not config.sample_rate or not config.num_channels):
            return 400, f"audio_format {fmt!r} requires sample_rate and num_channels."
        return None

    async def _stream(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        core: SonioxScript,
        record: SessionRecord,
        outbox: _Outbox,
    ) -> None:
        config = record.config
        assert config is not None
        bps = bytes_per_second(config.audio_format or "", config.sample_rate, config.num_channels)
        while True:
            try:
                msg = await ws.receive(timeout=self.idle_timeout_s)
            except TimeoutError:
                await self._refuse(ws, record, 408, "Request timeout: no audio or keepalive received.")
                record.ended = "idle"  # code and text UNCONFIRMED
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                record.ended = "client-closed"
                self._dropped[record.config.client_reference_id if record.config else None] = core
                return
            data = msg.data if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT) else None
            if not data:  # empty text or binary frame: end of audio
                for message in core.finish():
                    outbox.put(message)
                await outbox.drain()
                record.ended = "finished"
                await ws.close(code=1000)
                return
            if msg.type == WSMsgType.TEXT:
                self._control(data, core, record, outbox)
                continue
            record.audio_bytes += len(data)
            record.audio_ms = record.audio_bytes * 1000 // bps if bps else core.audio_ms
            for message in core.receive_audio(data):
                outbox.put(message)
            if await self._inject(ws, request, core, record, outbox):
                return

    def _control(self, data: str, core: SonioxScript, record: SessionRecord, outbox: _Outbox) -> None:
        try:
            control = CONTROL_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # UNCONFIRMED how Soniox answers junk; ignoring it keeps the stream alive
        if control.type == "keepalive":
            record.keepalives += 1
        elif control.type == "finalize":
            record.finalizes += 1
            delay_s = self._jittered(self.profile.stt_finalize_ms) / 1000
            for message in core.finalize(control.trailing_silence_ms):
                outbox.put(message, delay_s)

    def _jittered(self, ms: int) -> float:
        spread = self.profile.jitter_ms
        return max(0.0, ms + self.rng.uniform(-spread, spread))

    async def _inject(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        core: SonioxScript,
        record: SessionRecord,
        outbox: _Outbox,
    ) -> bool:
        faults = self.faults
        if faults.stall_after_ms is not None and record.audio_ms >= faults.stall_after_ms:
            faults.stall_after_ms = None
            outbox.stall_until = asyncio.get_running_loop().time() + faults.stall_ms / 1000
        if faults.drop_after_ms is not None and record.audio_ms >= faults.drop_after_ms:
            faults.drop_after_ms = None
            record.ended = "dropped"
            self._dropped[record.config.client_reference_id if record.config else None] = core
            if request.transport is not None:
                request.transport.abort()
            return True
        if faults.error_after_ms is not None and record.audio_ms >= faults.error_after_ms:
            faults.error_after_ms = None
            self._dropped[record.config.client_reference_id if record.config else None] = core
            code = faults.error_code
            await self._refuse(
                ws, record, code, f"Cannot continue request (code {code}). Please restart the request."
            )
            return True
        return False


async def serve(profile_name: str, host: str, port: int) -> None:
    """Run a Soniox emulator (empty script; words only if a script is added) until cancelled."""
    emulator = SonioxEmulator(profile=get_profile(profile_name))
    await serve_until_cancelled(
        emulator, host, port, lambda url: f"soniox emulator ({profile_name}) listening on {url}"
    )
