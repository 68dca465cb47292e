"""A local, wire-compatible Telnyx: Call Control REST server, signed webhooks, media dialler.

What it does (protocols.md 2.4):

* **REST server** (aiohttp): ``POST /v2/calls`` (dial) and
  ``POST /v2/calls/{cci}/actions/{answer,hangup,streaming_start,streaming_stop,
  playback_start,playback_stop,transfer}``. It requires ``Authorization: Bearer <api_key>``,
  answers ``{"data": {"result": "ok"}}``, ignores a repeated ``command_id`` on the same call
  (and on dial), and answers 422 / ``90018`` to any command after the call ended.
* **Webhook client**: every event is POSTed to the call's webhook URL, signed like Telnyx
  (Ed25519 over ``"{ts}|{body}"``, headers ``telnyx-timestamp`` / ``telnyx-signature-ed25519``;
  :attr:`TelnyxEmulator.public_key_b64` is the key to verify with). The last ``client_state``
  set by a command is echoed in every later webhook of that call.
* **Media dialler**: on ``answer``/``streaming_start`` with a ``stream_url`` it webhooks
  ``call.answered`` and ``streaming.started``, then builds a caller through ``caller_factory``
  (default: :class:`mediasrv.emulators.caller.SimulatedCaller`) and awaits its ``connect()``
  (which dials the WebSocket and sends ``connected`` + ``start``). On hangup it awaits the
  caller's ``hangup()`` (``stop`` + close) and then webhooks ``streaming.stopped`` and
  ``call.hangup``.
* **Legacy playback** (the old platform's path, for the latency lab): ``playback_start``
  fetches ``audio_url`` over HTTP at command time, waits for the file and for the previous
  playback, then webhooks ``call.playback.started``, "plays" for the file's duration (WAV
  from its header, MP3 by summing MPEG frame headers) and webhooks ``call.playback.ended``.
  Fetch, start and end times are recorded per playback (:class:`PlaybackRecord`).

Rules:

1. Webhooks of one call go out one at a time, in the order the events happened (a per-call
   outbox task). Media dialling and caller hang-up run in that same outbox, so
   ``streaming.started`` precedes the WS ``start`` and ``stop`` precedes ``streaming.stopped``.
2. Nothing here is a mock: real sockets, real signatures. Times recorded are ``loop.time()``;
   webhook timestamps use the injected wall ``clock`` (Telnyx stamps Unix seconds).
3. Faults are data (:class:`Faults`), mutated by tests between commands.
4. Error codes other than ``90018`` (401, 404, 422 on bad parameters) are UNCONFIRMED shapes
   that follow the documented ``{"errors": [...]}`` envelope.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import importlib
import logging
import random
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol, runtime_checkable

import aiohttp
import msgspec
from aiohttp import web

from mediasrv.profiles import Profile, get_profile
from mediasrv.providers.telnyx.callcontrol import (
    CALL_ALREADY_ENDED_CODE,
    AnswerParams,
    CommandParams,
    DialParams,
    HangupParams,
    PlaybackStartParams,
    PlaybackStopParams,
    StreamingStartParams,
    StreamingStopParams,
    TransferParams,
)
from mediasrv.providers.telnyx.webhooks import (
    CallAnswered,
    CallHangup,
    CallInitiated,
    CallPlaybackEnded,
    CallPlaybackStarted,
    StreamingFailed,
    StreamingStarted,
    StreamingStopped,
    StreamParams,
    WebhookEnvelope,
    WebhookEvent,
    WebhookMeta,
    WebhookPayload,
    WebhookSigner,
    encode_webhook,
)

__all__ = [
    "STREAM_AUTH_HEADER",
    "CallRecord",
    "CallerFactory",
    "CommandRecord",
    "Faults",
    "MediaCaller",
    "PlaybackRecord",
    "TelnyxEmulator",
    "WebhookRecord",
    "audio_duration_s",
    "mp3_duration_s",
    "serve",
    "wav_duration_s",
]

logger = logging.getLogger(__name__)

STREAM_AUTH_HEADER: Final = "x-telnyx-streaming-auth-token"
_MEDIA_TIMEOUT_S: Final = 5.0
_PLAYBACK_START_DELAY_S: Final[dict[str, float]] = {"fast": 0.1, "typical": 0.2, "slow": 0.3}
"""Modelled REST-playback start latency per profile (design.md: "REST playback at 100-300 ms")."""
_INFINITE_LOOP: Final = 1_000_000


def _wall_clock() -> float:
    return time.time()  # noqa: TID251 - telnyx-timestamp and occurred_at are Unix wall-clock time


# --------------------------------------------------------------------------- audio durations


_MPEG_BITRATES_KBPS: Final[dict[tuple[bool, int], tuple[int, ...]]] = {
    # (is MPEG-1, layer) -> bitrate per index 0..14 (0 = free format, unsupported here)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_SAMPLE_RATES: Final[dict[int, tuple[int, int, int]]] = {
    3: (44100, 48000, 32000),  # MPEG-1
    2: (22050, 24000, 16000),  # MPEG-2
    0: (11025, 12000, 8000),  # MPEG-2.5
}


def _mpeg_frame(header: bytes) -> tuple[int, int, int] | None:
    """Parse a 4-byte MPEG audio frame header: (frame bytes, samples, sample rate) or None."""
    b1, b2 = header[1], header[2]
    if header[0] != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MPEG_BITRATES_KBPS[(mpeg1, layer)][bitrate_index] * 1000
    sample_rate = _MPEG_SAMPLE_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // sample_rate + padding) * 4, 384, sample_rate
    samples = 1152 if (layer == 2 or mpeg1) else 576
    return samples // 8 * bitrate // sample_rate + padding, samples, sample_rate


def mp3_duration_s(data: bytes) -> float:
    """Duration of an MP3 file: the sum of its MPEG audio frames.

    An ID3v2 tag is skipped and a leading Xing/Info frame (no audio) is not counted.
    """
    offset = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        offset = 10 + size + (10 if data[5] & 0x10 else 0)
    total_s = 0.0
    first = True
    while offset + 4 <= len(data):
        frame = _mpeg_frame(data[offset : offset + 4])
        if frame is None or frame[0] <= 4 or offset + frame[0] > len(data):
            offset += 1  # resynchronise on the next frame sync
            continue
        length, samples, sample_rate = frame
        body = data[offset : offset + min(length, 64)]
        if not (first and (b"Xing" in body or b"Info" in body)):
            total_s += samples / sample_rate
        first = False
        offset += length
    return total_s


def wav_duration_s(data: bytes) -> float:
    """Duration of a RIFF/WAVE file from its ``fmt `` byte rate and ``data`` chunk size."""
    offset, byte_rate, data_bytes = 12, 0, 0
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk_id == b"fmt " and offset + 16 <= len(data):
            byte_rate = struct.unpack_from("<I", data, offset + 16)[0]
        elif chunk_id == b"data":
            data_bytes = min(size, len(data) - offset - 8)  # streamed WAVs may claim 0xFFFFFFFF
            break
        offset += 8 + size + (size & 1)
    return data_bytes / byte_rate if byte_rate else 0.0


def audio_duration_s(data: bytes) -> float:
    """Duration of a WAV or MP3 file (sniffed from its first bytes)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return wav_duration_s(data)
    return mp3_duration_s(data)


# --------------------------------------------------------------------------- records and faults


class MediaCaller(Protocol):
    """What the emulator needs from a simulated caller (``SimulatedCaller`` satisfies it)."""

    async def connect(self) -> object:
        """Dial the media WebSocket and send ``connected`` + ``start``."""
        ...

    async def hangup(self) -> object:
        """Send ``stop`` and close the WebSocket."""
        ...


@runtime_checkable
class _Droppable(Protocol):
    async def drop(self) -> object: ...


CallerFactory = Callable[[str, dict[str, str], str], Awaitable[MediaCaller]]
"""``(stream_url, upgrade headers, call_control_id) -> caller``; the emulator then awaits ``connect()``."""


@dataclass
class Faults:
    """Fault injection; mutate between commands (rule 3)."""

    fail_next: list[int] = field(default_factory=list)
    """HTTP statuses for the next commands, one popped per command (e.g. ``[500]``, ``[429, 503]``)."""
    fail_after_apply: bool = False
    """The failed command still takes effect (a lost response): a retry must be deduplicated."""
    retry_after_s: float | None = None
    """``Retry-After`` sent with an injected 429."""
    webhook_delay_s: float = 0.0
    """Extra delay before each webhook POST."""
    drop_media_after_s: float | None = None
    """Drop every new media WebSocket this long after it connects (webhook ``streaming.failed``)."""


@dataclass
class CommandRecord:
    """One REST command as received."""

    action: str
    call_control_id: str
    body: dict[str, Any]
    command_id: str | None
    status: int
    duplicate: bool
    at: float


@dataclass
class WebhookRecord:
    """One webhook as sent, with the receiver's answer."""

    event_type: str
    url: str | None
    body: bytes
    status: int | None
    error: str | None
    sent_at: float
    answered_at: float | None = None


@dataclass
class PlaybackRecord:
    """Timeline of one legacy playback (``loop.time()`` seconds)."""

    call_control_id: str
    media_url: str | None
    media_name: str | None
    command_at: float
    fetch_started_at: float | None = None
    fetch_done_at: float | None = None
    fetch_status: int | None = None
    size_bytes: int = 0
    duration_s: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    status: str | None = None


@dataclass
class CallRecord:
    """Everything the emulator knows about one call leg."""

    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    direction: str
    from_: str
    to: str
    state: str = "parked"
    client_state: str | None = None
    webhook_url: str | None = None
    stream_url: str | None = None
    streaming: bool = False
    caller: MediaCaller | None = None
    hangup_cause: str | None = None
    hangup_source: str | None = None
    commands: list[CommandRecord] = field(default_factory=list)
    webhooks: list[WebhookRecord] = field(default_factory=list)
    playbacks: list[PlaybackRecord] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        """True once the call has hung up."""
        return self.state == "hangup"


@dataclass
class _Playback:
    record: PlaybackRecord
    fetch: asyncio.Task[bytes | None] | None
    inline: bytes | None
    loops: int
    overlay: bool | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_status: str = "cancelled"


@dataclass
class _Call:
    record: CallRecord
    factory: CallerFactory | None
    outbox: asyncio.Queue[Callable[[], Awaitable[None]]] = field(default_factory=asyncio.Queue)
    command_ids: set[str] = field(default_factory=set)
    pending: collections.deque[_Playback] = field(default_factory=collections.deque)
    playing: _Playback | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class _Refused(Exception):
    """Internal: a command is refused with an HTTP status and a Telnyx error."""

    def __init__(self, status: int, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail


_ACTION_PARAMS: Final[dict[str, type[CommandParams]]] = {
    "answer": AnswerParams,
    "hangup": HangupParams,
    "streaming_start": StreamingStartParams,
    "streaming_stop": StreamingStopParams,
    "playback_start": PlaybackStartParams,
    "playback_stop": PlaybackStopParams,
    "transfer": TransferParams,
}


# --------------------------------------------------------------------------- the emulator


class TelnyxEmulator:
    """Telnyx Call Control + webhooks + media dialler on 127.0.0.1.

    Args:
        profile: latency profile (sets the modelled REST-playback start delay).
        api_key: the bearer token the REST API accepts.
        webhook_url: where webhooks go (a command's ``webhook_url`` overrides it per call).
        caller_factory: builds the simulated caller for each media stream.
        rng: randomness for ids.
        clock: wall clock for webhook timestamps (Unix seconds).
        connection_id: the Call Control application id put in payloads.
        playback_start_delay_s: override the profile's REST-playback start latency.
    """

    def __init__(
        self,
        *,
        profile: Profile,
        api_key: str = "test",
        webhook_url: str | None = None,
        caller_factory: CallerFactory | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = _wall_clock,
        connection_id: str = "emulator-connection",
        playback_start_delay_s: float | None = None,
    ) -> None:
        self.profile = profile
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.caller_factory = caller_factory
        self.connection_id = connection_id
        self.faults = Faults()
        self.calls: dict[str, CallRecord] = {}
        self.playback_start_delay_s = (
            playback_start_delay_s
            if playback_start_delay_s is not None
            else _PLAYBACK_START_DELAY_S.get(profile.name, 0.2)
        )
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._signer = WebhookSigner(self._rng.randbytes(32))
        self._calls: dict[str, _Call] = {}
        self._dials: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Condition()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def public_key_b64(self) -> str:
        """The Ed25519 public key (base64, 32 bytes) that verifies this emulator's webhooks."""
        return self._signer.public_key_b64

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start the REST server; returns the base URL ``http://HOST:PORT/v2``."""
        app = web.Application()
        app.router.add_post("/v2/calls", self._handle_dial)
        app.router.add_post("/v2/calls/{cci}/actions/{action}", self._handle_action)
        app.router.add_post("/_emulator/inbound", self._handle_place_inbound)
        app.router.add_post("/_emulator/calls/{cci}/caller_hangup", self._handle_caller_hangup)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}/v2"
        self._http = aiohttp.ClientSession()
        return self.url

    async def close(self) -> None:
        """Hang up live callers, stop every task, close the server and the HTTP client. Idempotent."""
        for call in self._calls.values():
            caller, call.record.caller = call.record.caller, None
            if caller is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(caller.hangup(), _MEDIA_TIMEOUT_S)
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    # ----------------------------------------------------------------- driving calls

    async def place_inbound_call(
        self,
        from_: str = "+15550001111",
        to: str = "+15550002222",
        *,
        caller: CallerFactory | None = None,
        caller_id_name: str | None = None,
    ) -> str:
        """Ring the application: webhook ``call.initiated`` (incoming, parked).

        Args:
            from_: the caller's number.
            to: the number dialled.
            caller: caller factory for this call (overrides the emulator's).
            caller_id_name: CNAM shown in the webhook.

        Returns:
            The new ``call_control_id``.
        """
        call = self._new_call("incoming", from_, to, caller)
        record = call.record
        payload = CallInitiated(
            **self._common(record),
            direction="incoming",
            from_=from_,
            to=to,
            caller_id_name=caller_id_name or from_,
            state="parked",
            start_time=self._iso_now(),
            calling_party_type="pstn",
            offered_codecs="PCMU,PCMA,G722",
        )
        self._emit(call, "call.initiated", payload)
        return record.call_control_id

    async def hangup_from_caller(self, call_control_id: str, *, cause: str = "normal_clearing") -> None:
        """The caller hangs up: WS ``stop``, ``streaming.stopped``, ``call.hangup`` (source ``caller``)."""
        call = self._calls[call_control_id]
        if not call.record.ended:
            self._end_call(call, source="caller", cause=cause)

    async def drop_media(self, call_control_id: str) -> None:
        """Break the media WebSocket (``drop()`` if the caller has it, else ``hangup()``).

        Webhooks ``streaming.failed``; the call itself stays up.
        """
        call = self._calls[call_control_id]
        call.outbox.put_nowait(lambda: self._drop_media_step(call))

    async def wait_webhook(
        self, call_control_id: str, event_type: str, *, timeout_s: float = 5.0
    ) -> WebhookRecord:
        """Wait until a webhook of ``event_type`` for the call has been answered; returns its record.

        Raises:
            TimeoutError: none arrived in time.
        """

        def find() -> WebhookRecord | None:
            record = self.calls.get(call_control_id)
            hooks = record.webhooks if record is not None else []
            return next((w for w in hooks if w.event_type == event_type and w.answered_at is not None), None)

        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: find() is not None)
        found = find()
        assert found is not None
        return found

    # ----------------------------------------------------------------- REST handlers

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.api_key}"

    async def _handle_action(self, request: web.Request) -> web.Response:
        cci, action = request.match_info["cci"], request.match_info["action"]
        raw = await request.read()
        call = self._calls.get(cci)
        try:
            if not self._authorised(request):
                raise _Refused(401, "10009", "Authentication failed", "missing or wrong bearer token")
            body = self._json_object(raw)
            if call is None:
                raise _Refused(404, "10005", "Resource not found", f"no call {cci}")
        except _Refused as refused:
            return self._error_response(refused)
        command_id = body.get("command_id") if isinstance(body.get("command_id"), str) else None
        duplicate = command_id is not None and command_id in call.command_ids
        status, response = 200, self._ok()
        if not duplicate:
            status, response = await self._apply(call, action, raw, command_id)
        call.record.commands.append(
            CommandRecord(action, cci, body, command_id, status, duplicate, asyncio.get_running_loop().time())
        )
        return response

    async def _apply(
        self, call: _Call, action: str, raw: bytes, command_id: str | None
    ) -> tuple[int, web.Response]:
        fail_status = self.faults.fail_next.pop(0) if self.faults.fail_next else None
        if fail_status is not None and not self.faults.fail_after_apply:
            return fail_status, self._fault_response(fail_status)
        try:
            params_type = _ACTION_PARAMS.get(action)
            if params_type is None:
                raise _Refused(404, "10005", "Resource not found", f"action {action!r} is not emulated")
            if call.record.ended:
                raise _Refused(
                    422, CALL_ALREADY_ENDED_CODE, "Call has already ended", "the call is not active"
                )
            try:
                params = msgspec.json.decode(raw or b"{}", type=params_type)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _Refused(422, "10015", "Invalid parameter", str(exc)) from exc
            if params.client_state is not None:
                call.record.client_state = params.client_state
            self._dispatch(call, params)
        except _Refused as refused:
            return refused.status, self._error_response(refused)
        if command_id is not None:
            call.command_ids.add(command_id)
        if fail_status is not None:
            return fail_status, self._fault_response(fail_status)
        return 200, self._ok()

    def _dispatch(self, call: _Call, params: CommandParams) -> None:
        if isinstance(params, AnswerParams):
            self._answer(call, params)
        elif isinstance(params, HangupParams):
            self._end_call(call, source="callee", cause="normal_clearing")
        elif isinstance(params, StreamingStartParams):
            if params.stream_url is None:
                raise _Refused(422, "10015", "Invalid parameter", "stream_url is required")
            custom = {p.name: p.value for p in params.custom_parameters or []}
            self._start_stream(call, params.stream_url, params.stream_track, params.stream_auth_token, custom)
        elif isinstance(params, StreamingStopParams):
            call.outbox.put_nowait(lambda: self._stop_stream_step(call))
        elif isinstance(params, PlaybackStartParams):
            self._playback_start(call, params)
        elif isinstance(params, PlaybackStopParams):
            self._playback_stop(call, params.stop or "all")
        elif isinstance(params, TransferParams):
            logger.debug("< transfer %s to %s (recorded only)", call.record.call_control_id, params.to)

    async def _handle_dial(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            if not self._authorised(request):
                raise _Refused(401, "10009", "Authentication failed", "missing or wrong bearer token")
            body = self._json_object(raw)
            try:
                params = msgspec.json.decode(raw, type=DialParams)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _Refused(422, "10015", "Invalid parameter", str(exc)) from exc
        except _Refused as refused:
            return self._error_response(refused)
        if self.faults.fail_next and not self.faults.fail_after_apply:
            return self._fault_response(self.faults.fail_next.pop(0))
        # "Telnyx will ignore others Dial commands with the same command_id" (call_dial_params.py).
        existing = self._dials.get(params.command_id or "")
        call = (
            self._calls[existing] if existing else self._new_call("outgoing", params.from_, params.to, None)
        )
        record = call.record
        record.commands.append(
            CommandRecord(
                "dial",
                record.call_control_id,
                body,
                params.command_id,
                200,
                existing is not None,
                asyncio.get_running_loop().time(),
            )
        )
        if existing is None:
            if params.command_id:
                self._dials[params.command_id] = record.call_control_id
            record.client_state = params.client_state
            record.webhook_url = params.webhook_url or self.webhook_url
            record.state = "bridging"
            initiated = CallInitiated(
                **self._common(record),
                direction="outgoing",
                from_=params.from_,
                to=params.to,
                state="bridging",
                start_time=self._iso_now(),
            )
            self._emit(call, "call.initiated", initiated)
            answer = AnswerParams(stream_url=params.stream_url, stream_track=params.stream_track)
            call.outbox.put_nowait(lambda: self._remote_answer_step(call, answer))
        data = {
            "call_control_id": record.call_control_id,
            "call_leg_id": record.call_leg_id,
            "call_session_id": record.call_session_id,
            "is_alive": not record.ended,
            "record_type": "call",
        }
        return web.json_response({"data": data})

    async def _handle_place_inbound(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error_response(_Refused(401, "10009", "Authentication failed", "bad bearer token"))
        body = self._json_object_or_empty(await request.read())
        cci = await self.place_inbound_call(
            str(body.get("from", "+15550001111")), str(body.get("to", "+15550002222"))
        )
        return web.json_response({"data": {"call_control_id": cci}})

    async def _handle_caller_hangup(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error_response(_Refused(401, "10009", "Authentication failed", "bad bearer token"))
        cci = request.match_info["cci"]
        if cci not in self._calls:
            return self._error_response(_Refused(404, "10005", "Resource not found", f"no call {cci}"))
        await self.hangup_from_caller(cci)
        return self._ok()

    # ----------------------------------------------------------------- call behaviour

    def _answer(self, call: _Call, params: AnswerParams) -> None:
        record = call.record
        if params.webhook_url:
            record.webhook_url = params.webhook_url
        record.state = "answered"
        payload = CallAnswered(
            **self._common(record),
            from_=record.from_,
            to=record.to,
            state="answered",
            start_time=self._iso_now(),
            stream_url=params.stream_url,
            stream_track=params.stream_track,
        )
        self._emit(call, "call.answered", payload)
        if params.stream_url is not None:
            self._start_stream(call, params.stream_url, params.stream_track, None)

    async def _remote_answer_step(self, call: _Call, params: AnswerParams) -> None:
        if not call.record.ended:
            self._answer(call, params)

    def _start_stream(
        self,
        call: _Call,
        url: str,
        track: str | None,
        token: str | None,
        custom: dict[str, str] | None = None,
    ) -> None:
        # "Currently only one streaming/fork operation is supported per call": a new one replaces it.
        call.outbox.put_nowait(lambda: self._stop_stream_step(call))
        call.outbox.put_nowait(lambda: self._dial_media_step(call, url, track, token, custom))

    async def _dial_media_step(
        self, call: _Call, url: str, track: str | None, token: str | None, custom: dict[str, str] | None
    ) -> None:
        record = call.record
        if record.ended:
            return
        record.stream_url, record.streaming = url, True
        await self._emit_now(
            call, "streaming.started", StreamingStarted(**self._common(record), stream_url=url)
        )
        headers = {STREAM_AUTH_HEADER: token} if token else {}
        factory = call.factory or self.caller_factory
        try:
            if factory is not None:
                made = factory(url, headers, record.call_control_id)
            else:
                made = self._default_caller(record, url, token, custom)
            caller = await asyncio.wait_for(made, _MEDIA_TIMEOUT_S)
            await asyncio.wait_for(caller.connect(), _MEDIA_TIMEOUT_S)
        except Exception as exc:  # any failure to reach the stream is reported as Telnyx does
            logger.info("media stream to %s failed: %r", url, exc)
            record.streaming = False
            failed = StreamingFailed(
                **self._common(record),
                failure_reason=f"connection failed: {exc!r}",
                stream_type="websocket",
                stream_params=StreamParams(stream_url=url, track=track),
            )
            await self._emit_now(call, "streaming.failed", failed)
            return
        record.caller = caller
        if self.faults.drop_media_after_s is not None:
            self._spawn(self._drop_later(call, self.faults.drop_media_after_s))

    async def _default_caller(
        self, record: CallRecord, url: str, token: str | None, custom: dict[str, str] | None
    ) -> MediaCaller:
        """A :class:`mediasrv.emulators.caller.SimulatedCaller` carrying this call's identity."""
        module = importlib.import_module("mediasrv.emulators.caller")
        caller: MediaCaller = module.SimulatedCaller(
            url,
            auth_token=token,
            call_control_id=record.call_control_id,
            call_session_id=record.call_session_id,
            from_=record.from_,
            to=record.to,
            client_state=record.client_state,
            custom_parameters=custom,
        )
        return caller

    async def _drop_later(self, call: _Call, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        call.outbox.put_nowait(lambda: self._drop_media_step(call))

    async def _drop_media_step(self, call: _Call) -> None:
        record = call.record
        caller, record.caller = record.caller, None
        if caller is None:
            return
        record.streaming = False
        with contextlib.suppress(Exception):
            closing = caller.drop() if isinstance(caller, _Droppable) else caller.hangup()
            await asyncio.wait_for(closing, _MEDIA_TIMEOUT_S)
        failed = StreamingFailed(
            **self._common(record),
            failure_reason="websocket connection dropped",
            stream_type="websocket",
            stream_params=StreamParams(stream_url=record.stream_url),
        )
        await self._emit_now(call, "streaming.failed", failed)

    async def _stop_stream_step(self, call: _Call) -> None:
        record = call.record
        caller, record.caller = record.caller, None
        if caller is not None:
            try:
                await asyncio.wait_for(caller.hangup(), _MEDIA_TIMEOUT_S)
            except Exception as exc:  # the call goes on; the record shows what happened
                logger.info("caller hangup on %s failed: %r", record.call_control_id, exc)
        if record.streaming:
            record.streaming = False
            await self._emit_now(
                call,
                "streaming.stopped",
                StreamingStopped(**self._common(record), stream_url=record.stream_url),
            )

    def _end_call(self, call: _Call, *, source: str, cause: str) -> None:
        record = call.record
        record.state, record.hangup_source, record.hangup_cause = "hangup", source, cause
        self._playback_stop(call, "all", status="call_hangup")
        call.outbox.put_nowait(lambda: self._stop_stream_step(call))
        hangup = CallHangup(
            **self._common(record),
            hangup_cause=cause,
            hangup_source=source,
            sip_hangup_cause="200",
            from_=record.from_,
            to=record.to,
            end_time=self._iso_now(),
        )
        self._emit(call, "call.hangup", hangup)

    # ----------------------------------------------------------------- legacy playback

    def _playback_start(self, call: _Call, params: PlaybackStartParams) -> None:
        loop = asyncio.get_running_loop()
        inline: bytes | None = None
        if params.playback_content is not None:
            try:
                inline = base64.b64decode(params.playback_content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _Refused(422, "10015", "Invalid parameter", "playback_content is not base64") from exc
        elif params.audio_url is None:
            raise _Refused(422, "10015", "Invalid parameter", "give audio_url or playback_content")
        if params.stop is not None:
            self._playback_stop(call, params.stop)
        record = PlaybackRecord(call.record.call_control_id, params.audio_url, params.media_name, loop.time())
        call.record.playbacks.append(record)
        fetch = self._spawn(self._fetch(record)) if params.audio_url is not None else None
        loops = _INFINITE_LOOP if params.loop == "infinity" else max(1, int(params.loop or 1))
        call.pending.append(_Playback(record, fetch, inline, loops, params.overlay))
        call.wake.set()
        if not any(t.get_name() == f"playback:{record.call_control_id}" for t in self._tasks):
            self._spawn(self._run_playbacks(call), name=f"playback:{record.call_control_id}")

    def _playback_stop(self, call: _Call, stop: str, *, status: str = "cancelled") -> None:
        if stop == "all":
            while call.pending:
                dropped = call.pending.popleft()
                dropped.record.status = status
                if dropped.fetch is not None:
                    dropped.fetch.cancel()
        if call.playing is not None:
            call.playing.stop_status = status
            call.playing.stop.set()

    async def _fetch(self, record: PlaybackRecord) -> bytes | None:
        assert self._http is not None and record.media_url is not None
        loop = asyncio.get_running_loop()
        record.fetch_started_at = loop.time()
        try:
            async with self._http.get(record.media_url) as response:
                record.fetch_status = response.status
                data = await response.read() if response.status == 200 else None
        except aiohttp.ClientError as exc:
            logger.info("playback fetch %s failed: %r", record.media_url, exc)
            data = None
        record.fetch_done_at = loop.time()
        return data

    async def _run_playbacks(self, call: _Call) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not call.pending:
                call.wake.clear()
                await call.wake.wait()
            item = call.pending.popleft()
            record = item.record
            data = item.inline if item.fetch is None else await item.fetch
            if data is None:
                record.status = "file_not_found"
                self._emit(call, "call.playback.ended", self._playback_payload(call, item, ended=True))
                continue
            record.size_bytes, record.duration_s = len(data), audio_duration_s(data)
            call.playing = item
            await asyncio.sleep(self.playback_start_delay_s)
            if not item.stop.is_set():
                record.started_at = loop.time()
                self._emit(call, "call.playback.started", self._playback_payload(call, item, ended=False))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(item.stop.wait(), record.duration_s * item.loops)
            record.ended_at = loop.time()
            record.status = item.stop_status if item.stop.is_set() else "completed"
            call.playing = None
            self._emit(call, "call.playback.ended", self._playback_payload(call, item, ended=True))

    def _playback_payload(self, call: _Call, item: _Playback, *, ended: bool) -> WebhookPayload:
        common = self._common(call.record)
        url, name = item.record.media_url or "", item.record.media_name or ""
        if ended:
            return CallPlaybackEnded(
                **common, media_url=url, media_name=name, overlay=item.overlay, status=item.record.status
            )
        return CallPlaybackStarted(**common, media_url=url, media_name=name, overlay=item.overlay)

    # ----------------------------------------------------------------- webhooks

    def _emit(self, call: _Call, event_type: str, payload: WebhookPayload) -> None:
        """Queue a webhook built now (so it carries the client_state of this moment)."""
        envelope = self._envelope(call, event_type, payload)
        call.outbox.put_nowait(lambda: self._deliver(call, event_type, envelope))

    async def _emit_now(self, call: _Call, event_type: str, payload: WebhookPayload) -> None:
        """From inside an outbox step: deliver before the next queued step (keeps the order)."""
        await self._deliver(call, event_type, self._envelope(call, event_type, payload))

    def _envelope(self, call: _Call, event_type: str, payload: WebhookPayload) -> WebhookEnvelope:
        url = call.record.webhook_url or self.webhook_url
        event = WebhookEvent(
            event_type=event_type, id=self._new_uuid(), occurred_at=self._iso_now(), payload=payload
        )
        return WebhookEnvelope(data=event, meta=WebhookMeta(attempt=1, delivered_to=url))

    async def _deliver(self, call: _Call, event_type: str, envelope: WebhookEnvelope) -> None:
        loop = asyncio.get_running_loop()
        if self.faults.webhook_delay_s > 0:
            await asyncio.sleep(self.faults.webhook_delay_s)
        url = call.record.webhook_url or self.webhook_url
        body = encode_webhook(envelope)
        record = WebhookRecord(event_type, url, body, None, None, loop.time())
        call.record.webhooks.append(record)
        if url is None or self._http is None:
            record.error = "no webhook_url configured"
        else:
            headers = {
                "Content-Type": "application/json",
                **self._signer.sign(body, timestamp=int(self._clock())),
            }
            try:
                async with self._http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    record.status = response.status
            except aiohttp.ClientError as exc:
                record.error = repr(exc)
        record.answered_at = loop.time()
        logger.debug(
            "> webhook %s %s -> %s", event_type, call.record.call_control_id, record.status or record.error
        )
        async with self._changed:
            self._changed.notify_all()

    async def _run_outbox(self, call: _Call) -> None:
        while True:
            step = await call.outbox.get()
            await step()

    # ----------------------------------------------------------------- helpers

    def _new_call(self, direction: str, from_: str, to: str, factory: CallerFactory | None) -> _Call:
        cci = "v3:" + base64.urlsafe_b64encode(self._rng.randbytes(33)).decode()
        record = CallRecord(
            call_control_id=cci,
            call_leg_id=self._new_uuid(),
            call_session_id=self._new_uuid(),
            connection_id=self.connection_id,
            direction=direction,
            from_=from_,
            to=to,
            webhook_url=self.webhook_url,
        )
        call = _Call(record, factory)
        self._calls[cci] = call
        self.calls[cci] = record
        self._spawn(self._run_outbox(call), name=f"outbox:{cci}")
        return call

    def _common(self, record: CallRecord) -> dict[str, Any]:
        return {
            "call_control_id": record.call_control_id,
            "call_leg_id": record.call_leg_id,
            "call_session_id": record.call_session_id,
            "connection_id": record.connection_id,
            "client_state": record.client_state,
        }

    def _spawn(self, coro: Awaitable[Any], *, name: str | None = None) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        if name is not None:
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _iso_now(self) -> str:
        return (
            datetime.fromtimestamp(self._clock(), UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    @staticmethod
    def _json_object(raw: bytes) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(raw or b"{}")
        except msgspec.DecodeError as exc:
            raise _Refused(400, "10015", "Bad Request", f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _Refused(400, "10015", "Bad Request", "body is not a JSON object")
        return body

    @classmethod
    def _json_object_or_empty(cls, raw: bytes) -> dict[str, Any]:
        try:
            return cls._json_object(raw)
        except _Refused:
            return {}

    @staticmethod
    def _ok() -> web.Response:
        return web.json_response({"data": {"result": "ok"}})

    @staticmethod
    def _error_response(refused: _Refused) -> web.Response:
        error = {"code": refused.code, "title": refused.title, "detail": refused.detail}
        return web.json_response({"errors": [error]}, status=refused.status)

    def _fault_response(self, status: int) -> web.Response:
        headers = {}
        if status == 429 and self.faults.retry_after_s is not None:
            headers["Retry-After"] = f"{self.faults.retry_after_s:g}"
        error = {"code": str(status), "title": "Injected fault", "detail": "emulator fault injection"}
        return web.json_response({"errors": [error]}, status=status, headers=headers)


async def serve(
    profile_name: str, host: str, port: int, *, webhook_url: str | None = None, api_key: str = "test"
) -> None:
    """Run the emulator until cancelled (``mediasrv emulate telnyx``); prints its URL and public key.

    ``POST /_emulator/inbound`` (same bearer key, body ``{"from", "to"}``) rings the webhook URL.
    """
    emulator = TelnyxEmulator(profile=get_profile(profile_name), api_key=api_key, webhook_url=webhook_url)
    url = await emulator.start(host, port)
    print(f"telnyx emulator: {url}", flush=True)
    print(f"telnyx public key: {emulator.public_key_b64}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.close()
