"""Telnyx: our Call Control bodies, webhook decoding and media frames against Telnyx's own types.

* Every Call Control body our :class:`~mediasrv.providers.telnyx.callcontrol.CallControlClient`
  sends, as the Telnyx emulator received it over a real socket, fits the ``telnyx`` SDK's params
  ``TypedDict`` for that command (``ActionAnswerParams``, ``ActionStartStreamingParams``,
  ``ActionStartPlaybackParams``, ``CallDialParams``...): every key declared, every value valid
  for its annotation (the Literal enums included).
* Every command answer and webhook the SDK's response models (``Action*Response``,
  ``CallDialResponse``, ``Call*WebhookEvent``) can build, with optional fields absent, null and
  present, is decoded by ours.
* A webhook signed by our signer is verified by the SDK's own verifier, as by ours.
* The media WebSocket has no SDK type: the frames of Telnyx's documentation stand in
  (https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming and the AsyncAPI
  page https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket;
  payloads shortened).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel
from telnyx.types import (
    CallAnsweredWebhookEvent,
    CallDialParams,
    CallDialResponse,
    CallDtmfReceivedWebhookEvent,
    CallHangupWebhookEvent,
    CallInitiatedWebhookEvent,
    CallPlaybackEndedWebhookEvent,
    CallPlaybackStartedWebhookEvent,
    CallStreamingFailedWebhookEvent,
    CallStreamingStartedWebhookEvent,
    CallStreamingStoppedWebhookEvent,
)
from telnyx.types.calls import (
    ActionAnswerParams,
    ActionAnswerResponse,
    ActionHangupParams,
    ActionHangupResponse,
    ActionStartPlaybackParams,
    ActionStartPlaybackResponse,
    ActionStartStreamingParams,
    ActionStartStreamingResponse,
    ActionStopPlaybackParams,
    ActionStopPlaybackResponse,
    ActionStopStreamingParams,
    ActionStopStreamingResponse,
    ActionTransferParams,
    ActionTransferResponse,
)

from mediasrv.lab.emulators.telnyx import TelnyxEmulator
from mediasrv.profiles import get_profile
from mediasrv.providers.telnyx import (
    DtmfReceived,
    MarkEchoed,
    MediaReceived,
    StreamConnected,
    StreamErrored,
    StreamStarted,
    StreamStopped,
    TelnyxStream,
)
from mediasrv.providers.telnyx import messages as m
from mediasrv.providers.telnyx import webhooks as wh
from mediasrv.providers.telnyx.callcontrol import CallControlClient, decode_command_result, decode_dial_result
from tests.contract.sdk_check import assert_typeddict_accepts, sdk_variants

PARAMS: dict[str, type] = {
    "answer": ActionAnswerParams,
    "hangup": ActionHangupParams,
    "streaming_start": ActionStartStreamingParams,
    "streaming_stop": ActionStopStreamingParams,
    "transfer": ActionTransferParams,
    "playback_start": ActionStartPlaybackParams,
    "playback_stop": ActionStopPlaybackParams,
    "dial": CallDialParams,
}


@pytest.fixture
async def emulator() -> AsyncIterator[TelnyxEmulator]:
    emu = TelnyxEmulator(profile=get_profile("fast"), api_key="KEY", caller_factory=None)
    await emu.start()
    yield emu
    await emu.close()


async def test_every_call_control_body_fits_the_sdk_params(emulator: TelnyxEmulator) -> None:
    media = "ws://127.0.0.1:9/api/telnyx/audio-stream"  # nothing listens: streaming.failed, fine here
    async with CallControlClient("KEY", emulator.url) as cc:
        cci = await emulator.place_inbound_call()
        await cc.answer(cci, stream_url=media, client_state={"agent": "a"}, send_silence_when_idle=True)
        await cc.answer(cci)  # without a stream: no stream_* fields at all
        await cc.streaming_start(
            cci,
            stream_url=media,
            stream_track="both_tracks",
            stream_bidirectional_sampling_rate=16000,
            stream_bidirectional_target_legs="self",
            stream_auth_token="tok",
            custom_parameters={"agent": "a1"},
            client_state="s",
        )
        await cc.streaming_stop(cci, stream_id="0ccc7b54-4df3-4bca-a65a-3da1ecc777f0")
        await cc.streaming_stop(cci)
        await cc.transfer(cci, "+15550009999", from_="+15550001111", timeout_secs=30)
        await cc.playback_start(cci, audio_url="https://example.com/a.mp3", audio_type="mp3", loop=2)
        await cc.playback_start(
            cci, playback_content="UklGRg==", overlay=True, stop="current", cache_audio=True
        )
        await cc.playback_start(cci, playback_content="UklGRg==", loop="infinity", target_legs="self")
        await cc.playback_stop(cci, stop="current", overlay=False)
        await cc.hangup(cci, client_state="bye")
        dialled = await cc.dial(
            connection_id="conn", to="+15550002222", from_="+15550001111", stream_url=media, timeout_secs=20
        )
    commands = [c for call in emulator.calls.values() for c in call.commands]
    assert {c.action for c in commands} == set(PARAMS)
    for command in commands:
        assert_typeddict_accepts(PARAMS[command.action], command.body)
        assert command.body.get("command_id"), command.action  # every command is idempotent
    assert dialled.call_control_id in emulator.calls


def test_a_misspelt_or_invalid_field_would_be_caught() -> None:
    with pytest.raises(AssertionError, match="stream_tracks"):
        assert_typeddict_accepts(ActionAnswerParams, {"stream_tracks": "inbound_track"})
    with pytest.raises(Exception, match="stream_bidirectional_mode"):
        assert_typeddict_accepts(ActionAnswerParams, {"stream_bidirectional_mode": "raw"})
    with pytest.raises(AssertionError, match="connection_id"):
        assert_typeddict_accepts(CallDialParams, {"to": "+1"})


# --------------------------------------------------------------------------- answers and webhooks

RESPONSES = [
    ActionAnswerResponse,
    ActionHangupResponse,
    ActionStartStreamingResponse,
    ActionStopStreamingResponse,
    ActionTransferResponse,
    ActionStartPlaybackResponse,
    ActionStopPlaybackResponse,
]


@pytest.mark.parametrize("model", RESPONSES, ids=lambda c: c.__name__)
def test_every_command_answer_is_decoded(model: type[BaseModel]) -> None:
    results = [decode_command_result(json.dumps(answer).encode()) for _, answer in sdk_variants(model)]
    assert results == ["ok", "ok", "ok", "x"]  # absent and null mean "ok": a 2xx is success


def test_every_dial_answer_with_its_call_id_is_decoded() -> None:
    for variant, answer in sdk_variants(CallDialResponse):
        body = json.dumps(answer).encode()
        if answer.get("data") is None:
            # Only what the call cannot do without is required: no call id, nothing to command.
            with pytest.raises(msgspec.ValidationError):
                decode_dial_result(body)
            continue
        assert decode_dial_result(body).call_control_id == "x", variant


WEBHOOKS: dict[str, tuple[type[BaseModel], type]] = {
    "call.initiated": (CallInitiatedWebhookEvent, wh.CallInitiated),
    "call.answered": (CallAnsweredWebhookEvent, wh.CallAnswered),
    "call.hangup": (CallHangupWebhookEvent, wh.CallHangup),
    "streaming.started": (CallStreamingStartedWebhookEvent, wh.StreamingStarted),
    "streaming.stopped": (CallStreamingStoppedWebhookEvent, wh.StreamingStopped),
    "streaming.failed": (CallStreamingFailedWebhookEvent, wh.StreamingFailed),
    "call.playback.started": (CallPlaybackStartedWebhookEvent, wh.CallPlaybackStarted),
    "call.playback.ended": (CallPlaybackEndedWebhookEvent, wh.CallPlaybackEnded),
    "call.dtmf.received": (CallDtmfReceivedWebhookEvent, wh.CallDtmfReceived),
}


@pytest.mark.parametrize("event_type", list(WEBHOOKS))
def test_every_webhook_shape_is_decoded(event_type: str) -> None:
    model, ours = WEBHOOKS[event_type]
    for variant, body in sdk_variants(model):
        envelope = wh.decode_webhook(json.dumps(body).encode())
        data = body.get("data") or {}
        assert envelope.data.event_type == (data.get("event_type") or ""), variant
        if data.get("event_type") == event_type:
            assert isinstance(envelope.data.payload, ours), variant
        payload = data.get("payload") or {}
        assert envelope.data.payload.call_control_id == payload.get("call_control_id"), variant


def test_the_sdks_verifier_accepts_our_signature_and_ours_the_sdks() -> None:
    from telnyx.lib.webhook_verification import verify_webhook_signature  # type: ignore[import-not-found]

    signer = wh.WebhookSigner(bytes(range(32)))
    body = json.dumps(
        {"data": {"event_type": "call.initiated", "payload": {"call_control_id": "v3:x"}}}
    ).encode()
    now = int(time.time())  # noqa: TID251 - Telnyx stamps Unix seconds
    headers = signer.sign(body, timestamp=now)
    verify_webhook_signature(body.decode(), headers, signer.public_key_b64)
    assert wh.WebhookVerifier(signer.public_key_b64).verify(body, headers, now=now) == now


# --------------------------------------------------------------------------- media WebSocket (docs)

STREAM_ID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"
CCI = "v3:Zeb4ZrBNkRT3IMqiQ31aKqxZ9kNQOwyqZfGTNr3IRA6VUkEFWB4yIQ"
DOCS_INBOUND: list[dict[str, Any]] = [
    {"event": "connected", "version": "1.0.0"},
    {
        "event": "start",
        "sequence_number": "1",
        "start": {
            "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
            "call_control_id": CCI,
            "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
            "from": "+13122010094",
            "to": "+13122123456",
            "tags": ["TAG1", "TAG2"],
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        },
        "stream_id": STREAM_ID,
    },
    {
        "event": "media",
        "sequence_number": "4",
        "media": {
            "track": "inbound",
            "chunk": "2",
            "timestamp": "5",
            "payload": "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhI=",
        },
        "stream_id": STREAM_ID,
    },
    {
        "event": "dtmf",
        "stream_id": STREAM_ID,
        "occurred_at": "2022-03-25T14:19:38.466Z",
        "sequence_number": "5",
        "dtmf": {"digit": "1"},
    },
    {"event": "mark", "sequence_number": "6", "stream_id": STREAM_ID, "mark": {"name": "my label"}},
    {
        "event": "error",
        "payload": {"code": 100002, "title": "unknown_error", "detail": "An unknown error occurred"},
        "stream_id": STREAM_ID,
    },
    {
        "event": "stop",
        "sequence_number": "7",
        "stop": {"user_id": "3e6f995f-85f7-4705-9741-53b116d28237", "call_control_id": CCI},
        "stream_id": STREAM_ID,
    },
]


def test_the_documented_inbound_frames_are_decoded() -> None:
    stream = TelnyxStream()
    for frame in DOCS_INBOUND:
        stream.receive_text(json.dumps(frame), 0.0)
    events = stream.events_received()
    assert [type(e) for e in events] == [
        StreamConnected,
        StreamStarted,
        MediaReceived,
        DtmfReceived,
        MarkEchoed,
        StreamErrored,
        StreamStopped,
    ]
    started = events[1]
    assert isinstance(started, StreamStarted) and (started.call_control_id, started.encoding) == (CCI, "PCMU")
    assert stream.malformed == stream.unknown_events == 0


def test_our_outbound_frames_have_the_documented_shapes() -> None:
    # Docs: {"event": "media", "media": {"payload": <base64>}}, {"event": "mark", "mark": {"name": ...}},
    # {"event": "clear"}: the same keys, nothing more.
    stream = TelnyxStream()
    payload = base64.b64encode(b"\xff" * 160).decode()
    assert json.loads(stream.send_media(b"\xff" * 160)) == {"event": "media", "media": {"payload": payload}}
    assert json.loads(stream.send_mark("reply-1")) == {"event": "mark", "mark": {"name": "reply-1"}}
    assert json.loads(stream.send_clear()) == {"event": "clear"}
    assert m.OUTBOUND_DECODER.decode(stream.send_media(b"\x00" * 160)) == m.MediaOut(
        media=m.MediaOutBody(payload=b"\x00" * 160)
    )
