"""A local, wire-compatible Telnyx: Call Control REST server, signed webhooks, media dialler.

What it does (docs/providers.md 2.4):

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
  (default: :class:`mediasrv.lab.emulators.caller.SimulatedCaller`) and awaits its ``connect()``
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

Layout. This module holds :class:`TelnyxEmulator` (lifecycle, the REST handlers, the calls'
answer and hang-up) and re-exports the names below. The other sides are one module each:
``telnyx_records`` (records, faults, per-call state), ``telnyx_webhooks`` (the per-call outbox
and signed webhooks), ``telnyx_media`` (the media dialler) and ``telnyx_playback`` (legacy
playback and audio durations).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import aiohttp
import msgspec
from aiohttp import web

from mediasrv.lab.emulators.caller_core import Numbering, StartStyle
from mediasrv.lab.emulators.hosting import Listener, listen, serve_until_cancelled
from mediasrv.lab.emulators.telnyx_media import (
    MEDIA_TIMEOUT_S,
    STREAM_AUTH_HEADER,
    MediaDialler,
    NumberingName,
)
from mediasrv.lab.emulators.telnyx_playback import (
    PLAYBACK_START_DELAY_S,
    LegacyPlayback,
    audio_duration_s,
    mp3_duration_s,
    wav_duration_s,
)
from mediasrv.lab.emulators.telnyx_records import (
    CallerFactory,
    CallRecord,
    CallState,
    CommandRecord,
    Faults,
    MediaCaller,
    PlaybackRecord,
    Refused,
    WebhookRecord,
)
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
from mediasrv.providers.telnyx.webhooks import CallAnswered, CallHangup, CallInitiated, WebhookSigner

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


def _wall_clock() -> float:
    return time.time()  # noqa: TID251 - telnyx-timestamp and occurred_at are Unix wall-clock time


_ACTION_PARAMS: Final[dict[str, type[CommandParams]]] = {
    "answer": AnswerParams,
    "hangup": HangupParams,
    "streaming_start": StreamingStartParams,
    "streaming_stop": StreamingStopParams,
    "playback_start": PlaybackStartParams,
    "playback_stop": PlaybackStopParams,
    "transfer": TransferParams,
}


class TelnyxEmulator(MediaDialler, LegacyPlayback):
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
        start_styles: how each new media stream's ``start`` carries its optional fields, in
            turn (``full``, ``missing``, ``null``).
        numberings: how each new media stream numbers its counters, in turn (``documented``,
            ``arbitrary`` or a :class:`~mediasrv.lab.emulators.caller_core.Numbering`).
        webhook_attempts: deliveries of a webhook that gets no 2xx (Telnyx retries; the count
            and the delays are UNCONFIRMED), ``webhook_retry_delay_s`` apart, doubling.
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
        start_styles: Sequence[StartStyle] = ("full", "missing", "null"),
        numberings: Sequence[NumberingName | Numbering] = ("documented", "arbitrary"),
        webhook_attempts: int = 3,
        webhook_retry_delay_s: float = 0.05,
    ) -> None:
        self.profile = profile
        self.start_styles = start_styles
        self.numberings = numberings
        self.webhook_attempts = webhook_attempts
        self.webhook_retry_delay_s = webhook_retry_delay_s
        self._streams_started = 0
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.caller_factory = caller_factory
        self.connection_id = connection_id
        self.faults = Faults()
        self.calls: dict[str, CallRecord] = {}
        self.playback_start_delay_s = (
            playback_start_delay_s
            if playback_start_delay_s is not None
            else PLAYBACK_START_DELAY_S.get(profile.name, 0.2)
        )
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._signer = WebhookSigner(self._rng.randbytes(32))
        self._calls: dict[str, CallState] = {}
        self._dials: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Condition()
        self._http: aiohttp.ClientSession | None = None
        self._listener: Listener | None = None
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
        self._listener = await listen(app, host, port)
        self.url = f"http://{self._listener.host}:{self._listener.port}/v2"
        self._http = aiohttp.ClientSession()
        return self.url

    async def close(self) -> None:
        """Hang up live callers, stop every task, close the server and the HTTP client. Idempotent."""
        for call in self._calls.values():
            caller, call.record.caller = call.record.caller, None
            if caller is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(caller.hangup(), MEDIA_TIMEOUT_S)
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
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
                raise Refused(401, "10009", "Authentication failed", "missing or wrong bearer token")
            body = self._json_object(raw)
            if call is None:
                raise Refused(404, "10005", "Resource not found", f"no call {cci}")
        except Refused as refused:
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
        self, call: CallState, action: str, raw: bytes, command_id: str | None
    ) -> tuple[int, web.Response]:
        fail_status = self.faults.fail_next.pop(0) if self.faults.fail_next else None
        if fail_status is not None and not self.faults.fail_after_apply:
            return fail_status, self._fault_response(fail_status)
        try:
            params_type = _ACTION_PARAMS.get(action)
            if params_type is None:
                raise Refused(404, "10005", "Resource not found", f"action {action!r} is not emulated")
            if call.record.ended:
                raise Refused(
                    422, CALL_ALREADY_ENDED_CODE, "Call has already ended", "the call is not active"
                )
            try:
                params = msgspec.json.decode(raw or b"{}", type=params_type)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise Refused(422, "10015", "Invalid parameter", str(exc)) from exc
            if params.client_state is not None:
                call.record.client_state = params.client_state
            self._dispatch(call, params)
        except Refused as refused:
            return refused.status, self._error_response(refused)
        if command_id is not None:
            call.command_ids.add(command_id)
        if fail_status is not None:
            return fail_status, self._fault_response(fail_status)
        return 200, self._ok()

    def _dispatch(self, call: CallState, params: CommandParams) -> None:
        if isinstance(params, AnswerParams):
            self._answer(call, params)
        elif isinstance(params, HangupParams):
            self._end_call(call, source="callee", cause="normal_clearing")
        elif isinstance(params, StreamingStartParams):
            if params.stream_url is None:
                raise Refused(422, "10015", "Invalid parameter", "stream_url is required")
            custom = {p.name: p.value for p in params.custom_parameters or []}
            self._start_stream(
                call,
                params.stream_url,
                params.stream_track,
                params.stream_auth_token,
                custom,
                mode=params.stream_bidirectional_mode,
                codec=params.stream_bidirectional_codec,
            )
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
                raise Refused(401, "10009", "Authentication failed", "missing or wrong bearer token")
            body = self._json_object(raw)
            try:
                params = msgspec.json.decode(raw, type=DialParams)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise Refused(422, "10015", "Invalid parameter", str(exc)) from exc
        except Refused as refused:
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
            answer = AnswerParams(
                stream_url=params.stream_url,
                stream_track=params.stream_track,
                stream_bidirectional_mode=params.stream_bidirectional_mode,
                stream_bidirectional_codec=params.stream_bidirectional_codec,
            )
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
            return self._error_response(Refused(401, "10009", "Authentication failed", "bad bearer token"))
        body = self._json_object_or_empty(await request.read())
        cci = await self.place_inbound_call(
            str(body.get("from", "+15550001111")), str(body.get("to", "+15550002222"))
        )
        return web.json_response({"data": {"call_control_id": cci}})

    async def _handle_caller_hangup(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error_response(Refused(401, "10009", "Authentication failed", "bad bearer token"))
        cci = request.match_info["cci"]
        if cci not in self._calls:
            return self._error_response(Refused(404, "10005", "Resource not found", f"no call {cci}"))
        await self.hangup_from_caller(cci)
        return self._ok()

    # ----------------------------------------------------------------- call behaviour

    def _answer(self, call: CallState, params: AnswerParams) -> None:
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
            self._start_stream(
                call,
                params.stream_url,
                params.stream_track,
                None,
                mode=params.stream_bidirectional_mode,
                codec=params.stream_bidirectional_codec,
            )

    async def _remote_answer_step(self, call: CallState, params: AnswerParams) -> None:
        if not call.record.ended:
            self._answer(call, params)

    def _end_call(self, call: CallState, *, source: str, cause: str) -> None:
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

    # ----------------------------------------------------------------- REST helpers

    @staticmethod
    def _json_object(raw: bytes) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(raw or b"{}")
        except msgspec.DecodeError as exc:
            raise Refused(400, "10015", "Bad Request", f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise Refused(400, "10015", "Bad Request", "body is not a JSON object")
        return body

    @classmethod
    def _json_object_or_empty(cls, raw: bytes) -> dict[str, Any]:
        try:
            return cls._json_object(raw)
        except Refused:
            return {}

    @staticmethod
    def _ok() -> web.Response:
        return web.json_response({"data": {"result": "ok"}})

    @staticmethod
    def _error_response(refused: Refused) -> web.Response:
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
    await serve_until_cancelled(
        emulator,
        host,
        port,
        lambda url: f"telnyx emulator: {url}\ntelnyx public key: {emulator.public_key_b64}",
    )
