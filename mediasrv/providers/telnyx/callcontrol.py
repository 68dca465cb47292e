"""Telnyx Call Control v2 REST client (shell): answer, hangup, streaming, transfer, playback, dial.

Thin by design (the protocol lives in the message types): it turns keyword arguments into a
command Struct, POSTs it to ``{base_url}/calls/{call_control_id}/actions/{verb}`` with
``Authorization: Bearer``, and translates failures into the :mod:`mediasrv.errors` tree. No
call state lives here.

Rules:

1. Every command carries a ``command_id``; one is generated (uuid4) when the caller gives
   none. Telnyx "will ignore any command with the same ``command_id`` for the same
   ``call_control_id``" (telnyx-python ``action_answer_params.py``), so a retry after a
   lost response is applied at most once. Retries reuse the same body, hence the same id.
2. Retries are bounded (:class:`RetryPolicy`) and only for what may succeed next time:
   HTTP 429, HTTP 5xx, timeouts and connection errors. Backoff is exponential with jitter
   from an injected ``random.Random``; a 429's ``Retry-After`` is honoured up to the cap.
3. ``{"errors": [{code, title, detail}]}`` answers become :class:`TelnyxRejected`
   (a :class:`~mediasrv.errors.ProviderRejected`). HTTP 422 with code ``90018`` ("Call has
   already ended", docs/providers.md 1.1) becomes :class:`CallAlreadyEnded`; :meth:`hangup`
   treats it as success (``CommandResult.already_ended``), other commands raise it.
4. ``client_state`` arguments are plain text or a mapping; this client base64-encodes them
   (:func:`~mediasrv.providers.telnyx.webhooks.encode_client_state`), because Telnyx
   requires "a valid Base-64 encoded string" and echoes it in later webhooks.
5. Field names and enums follow telnyx-python ``types/calls/action_*_params.py`` and
   ``types/call_dial_params.py`` (docs/providers.md 1.4-1.6). ``stream_auth_token`` and
   ``stream_bidirectional_sampling_rate`` exist on ``streaming_start`` and ``dial`` /
   ``streaming_start`` respectively, **not** on ``answer``: to authenticate the media
   WebSocket, answer without ``stream_url`` and call :meth:`streaming_start` afterwards,
   or put a token in the ``stream_url`` query string.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Final, Literal, Self

import aiohttp
import msgspec

from mediasrv.errors import (
    ProviderConnectError,
    ProviderError,
    ProviderProtocolError,
    ProviderRejected,
    ProviderTimeout,
)
from mediasrv.providers.telnyx.webhooks import encode_client_state

__all__ = [
    "CALL_ALREADY_ENDED_CODE",
    "DEFAULT_BASE_URL",
    "AnswerParams",
    "ApiError",
    "CallAlreadyEnded",
    "CallControlClient",
    "CommandParams",
    "CommandResult",
    "CustomParameter",
    "DialParams",
    "DialResult",
    "HangupParams",
    "PlaybackStartParams",
    "PlaybackStopParams",
    "RetryPolicy",
    "StreamingStartParams",
    "StreamingStopParams",
    "TelnyxRejected",
    "TelnyxServerError",
    "Timeouts",
    "TransferParams",
    "decode_command_result",
    "decode_dial_result",
]

logger = logging.getLogger(__name__)

PROVIDER: Final = "telnyx"
DEFAULT_BASE_URL: Final = "https://api.telnyx.com/v2"
CALL_ALREADY_ENDED_CODE: Final = "90018"

ClientState = str | Mapping[str, object]
StreamTrack = Literal["inbound_track", "outbound_track", "both_tracks"]
StreamCodec = Literal["PCMU", "PCMA", "G722", "OPUS", "AMR-WB", "L16", "default"]
BidirectionalMode = Literal["mp3", "rtp"]
BidirectionalCodec = Literal["PCMU", "PCMA", "G722", "OPUS", "AMR-WB", "L16"]
SamplingRate = Literal[8000, 16000, 22050, 24000, 48000]
TargetLegs = Literal["both", "self", "opposite"]


# --------------------------------------------------------------------------- config


class Timeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Per-request timeouts in seconds."""

    connect_s: float = 3.0
    total_s: float = 10.0


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Bounded retry of retryable failures (rule 2)."""

    max_attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0


# --------------------------------------------------------------------------- command bodies


class CommandParams(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Fields every command accepts. ``client_state`` here is already base64."""

    client_state: str | None = None
    command_id: str | None = None


class CustomParameter(msgspec.Struct, frozen=True):
    """One ``custom_parameters`` entry; Telnyx copies it into the WS ``start`` frame."""

    name: str
    value: str


class AnswerParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``actions/answer`` (``action_answer_params.py``)."""

    stream_url: str | None = None
    stream_track: str | None = None
    stream_codec: str | None = None
    stream_bidirectional_mode: str | None = None
    stream_bidirectional_codec: str | None = None
    stream_bidirectional_target_legs: str | None = None
    send_silence_when_idle: bool | None = None
    webhook_url: str | None = None
    webhook_url_method: str | None = None


class HangupParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``actions/hangup``."""


class StreamingStartParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``actions/streaming_start`` (``action_start_streaming_params.py``)."""

    stream_url: str | None = None
    stream_track: str | None = None
    stream_codec: str | None = None
    stream_bidirectional_mode: str | None = None
    stream_bidirectional_codec: str | None = None
    stream_bidirectional_sampling_rate: int | None = None
    stream_bidirectional_target_legs: str | None = None
    stream_auth_token: str | None = None
    custom_parameters: list[CustomParameter] | None = None


class StreamingStopParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``actions/streaming_stop``; without ``stream_id`` every stream stops."""

    stream_id: str | None = None


class TransferParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``actions/transfer`` (``action_transfer_params.py``)."""

    to: str
    from_: str | None = msgspec.field(default=None, name="from")
    timeout_secs: int | None = None
    webhook_url: str | None = None


class PlaybackStartParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``actions/playback_start``, the legacy file playback (docs/providers.md 1.6)."""

    audio_url: str | None = None
    media_name: str | None = None
    playback_content: str | None = None
    audio_type: str | None = None
    loop: int | str | None = None
    overlay: bool | None = None
    stop: str | None = None
    target_legs: str | None = None
    cache_audio: bool | None = None


class PlaybackStopParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``actions/playback_stop``: ``stop`` is ``current`` or ``all``."""

    stop: str | None = None
    overlay: bool | None = None


class DialParams(CommandParams, frozen=True, kw_only=True, omit_defaults=True):
    """Body of ``POST /calls`` (``call_dial_params.py``)."""

    connection_id: str
    to: str
    from_: str = msgspec.field(name="from")
    stream_url: str | None = None
    stream_track: str | None = None
    stream_codec: str | None = None
    stream_bidirectional_mode: str | None = None
    stream_bidirectional_codec: str | None = None
    stream_bidirectional_sampling_rate: int | None = None
    stream_bidirectional_target_legs: str | None = None
    send_silence_when_idle: bool | None = None
    timeout_secs: int | None = None
    webhook_url: str | None = None


# --------------------------------------------------------------------------- responses and errors


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of a command: ``result`` from ``{"data": {"result": "ok"}}``."""

    command_id: str
    result: str = "ok"
    already_ended: bool = False
    """True when hangup found the call already gone (422 / 90018), which is not an error."""


class DialResult(msgspec.Struct, frozen=True, kw_only=True):
    """``data`` of a successful dial: only ``call_control_id`` is needed (to command the new leg)."""

    call_control_id: str
    call_leg_id: str | None = None
    call_session_id: str | None = None
    is_alive: bool | None = None
    record_type: str | None = "call"
    command_id: str = ""


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``{"errors": [...]}``; ``code`` normalised to a string."""

    code: str | None = None
    title: str | None = None
    detail: str | None = None


class _WireApiError(msgspec.Struct, frozen=True, kw_only=True):
    code: str | int | None = None
    title: str | None = None
    detail: str | None = None


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    errors: list[_WireApiError] = []


class _ResultData(msgspec.Struct, frozen=True, kw_only=True):
    result: str | None = None


class _ResultBody(msgspec.Struct, frozen=True, kw_only=True):
    # The SDK's Action*Response types ``data`` and ``data.result`` Optional: a 2xx is success
    # whatever they hold ("ok" when absent).
    data: _ResultData | None = None


class _DialBody(msgspec.Struct, frozen=True, kw_only=True):
    data: DialResult


class TelnyxRejected(ProviderRejected):
    """Telnyx refused the command (4xx, or 429 with ``retryable=True``).

    Attributes:
        errors: the decoded ``errors`` list (may be empty if the body was not JSON).
        retry_after_s: ``Retry-After`` of a 429, if given.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        errors: tuple[ApiError, ...] = (),
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=PROVIDER, status=status, retryable=retryable)
        self.errors = errors
        self.retry_after_s = retry_after_s

    @property
    def code(self) -> str | None:
        """The first error's Telnyx code (e.g. ``"90018"``), if any."""
        return self.errors[0].code if self.errors else None


class CallAlreadyEnded(TelnyxRejected):
    """HTTP 422 / code 90018: the call has already ended. Non-fatal for hangup."""


class TelnyxServerError(ProviderError):
    """Telnyx answered 5xx (retryable)."""

    def __init__(self, message: str, *, status: int, errors: tuple[ApiError, ...] = ()) -> None:
        super().__init__(message, provider=PROVIDER, status=status, retryable=True)
        self.errors = errors


_ERROR_DECODER: Final = msgspec.json.Decoder(_ErrorBody)
_RESULT_DECODER: Final = msgspec.json.Decoder(_ResultBody)
_DIAL_DECODER: Final = msgspec.json.Decoder(_DialBody)
_ENCODER: Final = msgspec.json.Encoder()


def decode_command_result(body: bytes) -> str:
    """The ``result`` of a 2xx command answer (``"ok"`` when ``data`` or ``result`` is absent or null).

    Raises:
        msgspec.DecodeError: not JSON. msgspec.ValidationError: a field of the wrong type.
    """
    data = _RESULT_DECODER.decode(body).data
    return (data.result if data is not None else None) or "ok"


def decode_dial_result(body: bytes) -> DialResult:
    """``data`` of a 2xx dial answer; every field but ``call_control_id`` may be missing or null.

    Raises:
        msgspec.DecodeError: not JSON. msgspec.ValidationError: no ``data.call_control_id``, or a
            field of the wrong type.
    """
    return _DIAL_DECODER.decode(body).data


def _parse_errors(body: bytes) -> tuple[ApiError, ...]:
    try:
        wire = _ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ()
    return tuple(
        ApiError(code=None if e.code is None else str(e.code), title=e.title, detail=e.detail)
        for e in wire.errors
    )


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: rare from an API; fall back to our own backoff


def error_from_response(status: int, body: bytes, retry_after: str | None = None) -> ProviderError:
    """Translate a non-2xx answer into the error tree (rule 3). Exposed for tests and tools."""
    errors = _parse_errors(body)
    summary = "; ".join(f"{e.code} {e.title or ''}: {e.detail or ''}".strip() for e in errors) or body[
        :200
    ].decode("utf-8", "replace")
    message = f"telnyx HTTP {status}: {summary}"
    if status >= 500:
        return TelnyxServerError(message, status=status, errors=errors)
    if status == 429:
        return TelnyxRejected(
            message,
            status=status,
            errors=errors,
            retryable=True,
            retry_after_s=_parse_retry_after(retry_after),
        )
    if status == 422 and any(e.code == CALL_ALREADY_ENDED_CODE for e in errors):
        return CallAlreadyEnded(message, status=status, errors=errors)
    return TelnyxRejected(message, status=status, errors=errors)


# --------------------------------------------------------------------------- client


class CallControlClient:
    """Async Call Control client: ``async with CallControlClient(api_key) as cc: await cc.answer(...)``.

    Args:
        api_key: Telnyx API v2 key (sent as ``Authorization: Bearer``).
        base_url: REST root, ``https://api.telnyx.com/v2`` or an emulator's URL.
        session: an aiohttp session to share; when ``None`` the client opens (and closes) its own.
        timeouts: per-request timeouts.
        retry: retry policy for 429 / 5xx / timeouts / connection errors.
        rng: randomness for ``command_id`` values and backoff jitter (injected, as time is: tests replay it).
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session
        self._owns_session = session is None
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._rng = rng
        self._jitter_rng = rng if rng is not None else random.Random()
        self._closed = False

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client opened it. Idempotent."""
        self._closed = True
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ProviderConnectError("telnyx call control client is closed", provider=PROVIDER)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def new_command_id(self) -> str:
        """A fresh uuid4 string (from the injected ``rng`` when one was given)."""
        if self._rng is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # ----------------------------------------------------------------- commands

    async def answer(
        self,
        call_control_id: str,
        *,
        stream_url: str | None = None,
        stream_track: StreamTrack = "inbound_track",
        stream_bidirectional_mode: BidirectionalMode = "rtp",
        stream_bidirectional_codec: BidirectionalCodec = "PCMU",
        stream_codec: StreamCodec = "PCMU",
        stream_bidirectional_target_legs: TargetLegs | None = None,
        send_silence_when_idle: bool | None = None,
        webhook_url: str | None = None,
        client_state: ClientState | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Answer a parked inbound call, optionally streaming its media to ``stream_url``.

        The ``stream_*`` arguments are sent only with a ``stream_url``. Defaults suit an AI agent:
        the caller's track only (no self-echo), raw RTP PCMU both ways. Answer takes no
        ``stream_auth_token`` (rule 5). Expect ``call.answered`` then ``streaming.started``.

        Raises:
            TelnyxRejected: refused (``CallAlreadyEnded`` if the caller already hung up).
            ProviderError: 5xx / 429 / timeout / connection failure after the retries.
        """
        streaming = stream_url is not None
        params = AnswerParams(
            stream_url=stream_url,
            stream_track=stream_track if streaming else None,
            stream_codec=stream_codec if streaming else None,
            stream_bidirectional_mode=stream_bidirectional_mode if streaming else None,
            stream_bidirectional_codec=stream_bidirectional_codec if streaming else None,
            stream_bidirectional_target_legs=stream_bidirectional_target_legs if streaming else None,
            send_silence_when_idle=send_silence_when_idle,
            webhook_url=webhook_url,
            client_state=self._state(client_state),
            command_id=command_id or self.new_command_id(),
        )
        return await self.command(call_control_id, "answer", params)

    async def hangup(
        self, call_control_id: str, *, client_state: ClientState | None = None, command_id: str | None = None
    ) -> CommandResult:
        """Hang up. A call that has already ended is not an error: ``already_ended`` is set.

        Raises:
            TelnyxRejected: refused for another reason.
            ProviderError: 5xx / 429 / timeout / connection failure after the retries.
        """
        params = HangupParams(
            client_state=self._state(client_state), command_id=command_id or self.new_command_id()
        )
        try:
            return await self.command(call_control_id, "hangup", params)
        except CallAlreadyEnded:
            logger.debug("< hangup %s: call already ended (90018)", call_control_id)
            return CommandResult(
                command_id=params.command_id or "", result="already_ended", already_ended=True
            )

    async def streaming_start(
        self,
        call_control_id: str,
        *,
        stream_url: str,
        stream_track: StreamTrack = "inbound_track",
        stream_bidirectional_mode: BidirectionalMode = "rtp",
        stream_bidirectional_codec: BidirectionalCodec = "PCMU",
        stream_codec: StreamCodec = "PCMU",
        stream_bidirectional_sampling_rate: SamplingRate | None = None,
        stream_bidirectional_target_legs: TargetLegs | None = None,
        stream_auth_token: str | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        client_state: ClientState | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Start (or replace: one stream per call) the media stream of an answered call.

        ``stream_auth_token`` reaches the WebSocket as the ``x-telnyx-streaming-auth-token``
        upgrade header and in the ``connected`` frame; ``custom_parameters`` appear in the
        ``start`` frame. Expect ``streaming.started`` (or ``streaming.failed``).

        Raises:
            TelnyxRejected: refused. ProviderError: transient failure after the retries.
        """
        params = StreamingStartParams(
            stream_url=stream_url,
            stream_track=stream_track,
            stream_codec=stream_codec,
            stream_bidirectional_mode=stream_bidirectional_mode,
            stream_bidirectional_codec=stream_bidirectional_codec,
            stream_bidirectional_sampling_rate=stream_bidirectional_sampling_rate,
            stream_bidirectional_target_legs=stream_bidirectional_target_legs,
            stream_auth_token=stream_auth_token,
            custom_parameters=(
                None
                if custom_parameters is None
                else [CustomParameter(name, value) for name, value in custom_parameters.items()]
            ),
            client_state=self._state(client_state),
            command_id=command_id or self.new_command_id(),
        )
        return await self.command(call_control_id, "streaming_start", params)

    async def streaming_stop(
        self,
        call_control_id: str,
        *,
        stream_id: str | None = None,
        client_state: ClientState | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Stop one stream (``stream_id``) or all of them. Expect ``streaming.stopped``."""
        params = StreamingStopParams(
            stream_id=stream_id,
            client_state=self._state(client_state),
            command_id=command_id or self.new_command_id(),
        )
        return await self.command(call_control_id, "streaming_stop", params)

    async def transfer(
        self,
        call_control_id: str,
        to: str,
        *,
        from_: str | None = None,
        timeout_secs: int | None = None,
        webhook_url: str | None = None,
        client_state: ClientState | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Transfer the call to ``to`` (a DID or SIP URI), e.g. a human agent."""
        params = TransferParams(
            to=to,
            from_=from_,
            timeout_secs=timeout_secs,
            webhook_url=webhook_url,
            client_state=self._state(client_state),
            command_id=command_id or self.new_command_id(),
        )
        return await self.command(call_control_id, "transfer", params)

    async def playback_start(
        self,
        call_control_id: str,
        *,
        audio_url: str | None = None,
        playback_content: str | None = None,
        media_name: str | None = None,
        audio_type: Literal["mp3", "wav"] | None = None,
        loop: int | Literal["infinity"] | None = None,
        overlay: bool | None = None,
        stop: Literal["current", "all"] | None = None,
        target_legs: TargetLegs | None = None,
        cache_audio: bool | None = None,
        client_state: ClientState | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Play a WAV/MP3 file on the call (the legacy, non-streaming path).

        Give exactly one of ``audio_url``, ``playback_content`` (base64 file bytes) or
        ``media_name``. Playbacks queue; expect ``call.playback.started`` / ``.ended``.

        Raises:
            ValueError: not exactly one audio source was given.
            TelnyxRejected: refused. ProviderError: transient failure after the retries.
        """
        sources = [s for s in (audio_url, playback_content, media_name) if s is not None]
        if len(sources) != 1:
            raise ValueError("playback_start: give exactly one of audio_url, playback_content, media_name")
        params = PlaybackStartParams(
            audio_url=audio_url,
            playback_content=playback_content,
            media_name=media_name,
            audio_type=audio_type,
            loop=loop,
            overlay=overlay,
            stop=stop,
            target_legs=target_legs,
            cache_audio=cache_audio,
            client_state=self._state(client_state),
            command_id=command_id or self.new_command_id(),
        )
        return await self.command(call_control_id, "playback_start", params)

    async def playback_stop(
        self,
        call_control_id: str,
        *,
        stop: Literal["current", "all"] = "all",
        overlay: bool | None = None,
        client_state: ClientState | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Stop the current playback (``current``: the queue moves on) or all of them."""
        params = PlaybackStopParams(
            stop=stop,
            overlay=overlay,
            client_state=self._state(client_state),
            command_id=command_id or self.new_command_id(),
        )
        return await self.command(call_control_id, "playback_stop", params)

    async def dial(
        self,
        *,
        connection_id: str,
        to: str,
        from_: str,
        stream_url: str | None = None,
        stream_track: StreamTrack = "inbound_track",
        stream_bidirectional_mode: BidirectionalMode = "rtp",
        stream_bidirectional_codec: BidirectionalCodec = "PCMU",
        stream_codec: StreamCodec = "PCMU",
        stream_bidirectional_sampling_rate: SamplingRate | None = None,
        timeout_secs: int | None = None,
        webhook_url: str | None = None,
        client_state: ClientState | None = None,
        command_id: str | None = None,
    ) -> DialResult:
        """Place an outbound call (``POST /calls``); webhooks follow for the new leg.

        Telnyx ignores other dials with the same ``command_id``, so the retry is safe.

        Returns:
            The new leg's ids.
        """
        streaming = stream_url is not None
        params = DialParams(
            connection_id=connection_id,
            to=to,
            from_=from_,
            stream_url=stream_url,
            stream_track=stream_track if streaming else None,
            stream_codec=stream_codec if streaming else None,
            stream_bidirectional_mode=stream_bidirectional_mode if streaming else None,
            stream_bidirectional_codec=stream_bidirectional_codec if streaming else None,
            stream_bidirectional_sampling_rate=stream_bidirectional_sampling_rate if streaming else None,
            timeout_secs=timeout_secs,
            webhook_url=webhook_url,
            client_state=self._state(client_state),
            command_id=command_id or self.new_command_id(),
        )
        body = await self._post("/calls", _ENCODER.encode(params), label="dial")
        try:
            data = decode_dial_result(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ProviderProtocolError(f"telnyx dial: unexpected answer: {exc}", provider=PROVIDER) from exc
        return msgspec.structs.replace(data, command_id=params.command_id or "")

    async def command(self, call_control_id: str, action: str, params: CommandParams) -> CommandResult:
        """POST any ``actions/<action>`` command with a prepared body (the generic entry point).

        Raises:
            TelnyxRejected: refused. ProviderError: transient failure after the retries.
            ProviderProtocolError: a 2xx answer that is not ``{"data": {"result": ...}}``.
        """
        if params.command_id is None:
            params = msgspec.structs.replace(params, command_id=self.new_command_id())
        path = f"/calls/{call_control_id}/actions/{action}"
        body = await self._post(path, _ENCODER.encode(params), label=action)
        try:
            result = decode_command_result(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ProviderProtocolError(
                f"telnyx {action}: unexpected answer: {exc}", provider=PROVIDER
            ) from exc
        return CommandResult(command_id=params.command_id or "", result=result)

    # ----------------------------------------------------------------- transport

    def _state(self, client_state: ClientState | None) -> str | None:
        return None if client_state is None else encode_client_state(client_state)

    async def _post(self, path: str, body: bytes, *, label: str) -> bytes:
        """POST with bounded retries (rule 2); the same bytes (same command_id) every time."""
        attempts = max(1, self._retry.max_attempts)
        for attempt in range(attempts):
            try:
                return await self._post_once(path, body, label=label)
            except ProviderError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    raise
                delay_s = self._backoff_s(attempt, exc)
                logger.debug("> %s retry %d in %.3f s after %s", label, attempt + 1, delay_s, exc)
                await asyncio.sleep(delay_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff_s(self, attempt: int, exc: ProviderError) -> float:
        jitter = 0.5 + self._jitter_rng.random() / 2
        delay_s = self._retry.backoff_s * (1 << attempt) * jitter
        if isinstance(exc, TelnyxRejected) and exc.retry_after_s is not None:
            delay_s = max(delay_s, exc.retry_after_s)
        return min(delay_s, self._retry.max_backoff_s)

    async def _post_once(self, path: str, body: bytes, *, label: str) -> bytes:
        session = self._ensure_session()
        timeout = aiohttp.ClientTimeout(total=self._timeouts.total_s, connect=self._timeouts.connect_s)
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        logger.debug("> %s %s", label, path)
        try:
            async with session.post(
                self.base_url + path, data=body, headers=headers, timeout=timeout
            ) as response:
                payload = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"telnyx {label}: no answer in time", provider=PROVIDER, retryable=True
            ) from exc
        except aiohttp.ClientError as exc:
            raise ProviderConnectError(f"telnyx {label}: {exc}", provider=PROVIDER, retryable=True) from exc
        logger.debug("< %s HTTP %d", label, status)
        if 200 <= status < 300:
            return payload
        raise error_from_response(status, payload, retry_after)
