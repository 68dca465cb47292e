"""CallControlClient against the Telnyx emulator over 127.0.0.1, with real signed webhooks.

Peers, all real sockets on port 0:
- the emulator (REST server + webhook client + media dialler);
- a small aiohttp app that verifies every webhook with WebhookVerifier and serves audio files;
- a tiny websockets server standing in for our media endpoint;
- a test caller factory that dials it and sends ``connected``/``start`` literals (docs/providers.md 2.1).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from mediasrv.errors import ProviderConnectError
from mediasrv.lab.emulators.hosting import listen
from mediasrv.lab.emulators.telnyx import TelnyxEmulator, audio_duration_s, mp3_duration_s, wav_duration_s
from mediasrv.profiles import get_profile
from mediasrv.providers.telnyx.callcontrol import (
    CallAlreadyEnded,
    CallControlClient,
    RetryPolicy,
    TelnyxRejected,
    TelnyxServerError,
)
from mediasrv.providers.telnyx.webhooks import (
    CallHangup,
    CallInitiated,
    CallPlaybackEnded,
    WebhookEnvelope,
    WebhookRejected,
    WebhookVerifier,
    decode_client_state_json,
    decode_webhook,
)

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_s=0.01, max_backoff_s=0.05)


# --------------------------------------------------------------------------- audio fixtures


def make_wav(seconds: float, rate_hz: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(b"\x00\x00" * int(seconds * rate_hz))
    return buf.getvalue()


def make_mp3(frames: int) -> bytes:
    """An ID3v2 tag, then MPEG-2.5 Layer III 8 kbps 8 kHz frames (72 bytes, 576 samples = 72 ms each)."""
    id3 = b"ID3\x03\x00\x00" + bytes([0, 0, 0, 20]) + b"\x00" * 20
    header = bytes([0xFF, 0xE3, 0x18, 0xC4])  # sync, MPEG-2.5, layer III, no CRC; 8 kbps, 8000 Hz, no padding
    return id3 + (header + b"\x00" * 68) * frames


def test_audio_durations() -> None:
    assert wav_duration_s(make_wav(0.25)) == pytest.approx(0.25)
    assert wav_duration_s(make_wav(1.0, 16000)) == pytest.approx(1.0)
    assert mp3_duration_s(make_mp3(5)) == pytest.approx(5 * 0.072)
    # MPEG-1 Layer III, 128 kbps, 44.1 kHz: 417-byte frames of 1152 samples (resync over junk in between)
    mpeg1 = bytes([0xFF, 0xFB, 0x90, 0x64]) + b"\x00" * 413
    assert mp3_duration_s(b"junk" + mpeg1 * 10) == pytest.approx(10 * 1152 / 44100)
    assert audio_duration_s(make_wav(0.5)) == pytest.approx(0.5)
    assert audio_duration_s(make_mp3(2)) == pytest.approx(0.144)


# --------------------------------------------------------------------------- peers


@dataclass
class Receiver:
    """Our side of the webhooks: verifies the signature on the raw body, then decodes."""

    verifier: WebhookVerifier
    events: list[WebhookEnvelope] = field(default_factory=list)
    rejected: list[WebhookRejected] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    url: str = ""

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.verifier.verify(body, request.headers, now=time.time())  # noqa: TID251 - Unix time, like Telnyx
        except WebhookRejected as exc:
            self.rejected.append(exc)
            return web.Response(status=401)
        self.events.append(decode_webhook(body))
        return web.Response(text="ok")

    async def media(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="audio/mpeg")

    def types(self, cci: str) -> list[str]:
        return [e.data.event_type for e in self.events if e.data.payload.call_control_id == cci]

    def payloads(self, cci: str, event_type: str) -> list[object]:
        return [
            e.data.payload
            for e in self.events
            if e.data.event_type == event_type and e.data.payload.call_control_id == cci
        ]


@dataclass
class MediaServer:
    """Stands in for our media WebSocket: records upgrade headers and every frame."""

    headers: list[dict[str, str]] = field(default_factory=list)
    frames: list[dict[str, object]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        async for message in ws:
            frame = json.loads(message)
            self.frames.append(frame)
            if frame["event"] == "start":
                self.started.set()
        self.closed.set()

    def events(self) -> list[object]:
        return [f["event"] for f in self.frames]


class LiteralCaller:
    """A minimal Telnyx media client: ``connected`` + ``start`` on connect, ``stop`` + close on hangup."""

    def __init__(self, url: str, headers: dict[str, str], cci: str) -> None:
        self.url, self.headers, self.cci = url, headers, cci
        self.ws: ClientConnection | None = None

    async def connect(self) -> None:
        self.ws = await connect(self.url, additional_headers=self.headers)
        await self.ws.send('{"event":"connected","version":"1.0.0"}')
        start = {
            "event": "start",
            "sequence_number": "1",
            "stream_id": "32de0dea-53cb-4b21-89a4-9610ba3ed5d1",
            "start": {
                "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
                "call_control_id": self.cci,
                "call_session_id": "ff55a038-5f9c-11ef-9d51-02420a0f6f68",
                "from": "+15550001111",
                "to": "+15550002222",
                "tags": [],
                "client_state": None,
                "custom_parameters": {},
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            },
        }
        await self.ws.send(json.dumps(start))

    async def hangup(self) -> None:
        if self.ws is None:
            return
        ws, self.ws = self.ws, None
        stop = {
            "event": "stop",
            "sequence_number": "2",
            "stream_id": "32de0dea-53cb-4b21-89a4-9610ba3ed5d1",
            "stop": {"user_id": "3e6f995f-85f7-4705-9741-53b116d28237", "call_control_id": self.cci},
        }
        await ws.send(json.dumps(stop))
        await ws.close()


async def literal_caller(url: str, headers: dict[str, str], cci: str) -> LiteralCaller:
    return LiteralCaller(url, headers, cci)


@dataclass
class Rig:
    emulator: TelnyxEmulator
    receiver: Receiver
    media: MediaServer
    cc: CallControlClient


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    emulator = TelnyxEmulator(
        profile=get_profile("fast"),
        api_key="KEY_test",
        caller_factory=literal_caller,
        playback_start_delay_s=0.0,
    )
    receiver = Receiver(WebhookVerifier(emulator.public_key_b64))
    app = web.Application()
    app.router.add_post("/api/telnyx/webhook", receiver.webhook)
    app.router.add_get("/media/{name}", receiver.media)
    listener = await listen(app, "127.0.0.1", 0)
    receiver.url = f"http://{listener.host}:{listener.port}"
    emulator.webhook_url = f"{receiver.url}/api/telnyx/webhook"
    media = MediaServer()
    ws_server = await serve(media.handler, "127.0.0.1", 0)
    media.url = f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}/api/telnyx/audio-stream"
    base_url = await emulator.start()
    try:
        async with CallControlClient("KEY_test", base_url, retry=FAST_RETRY) as cc:
            yield Rig(emulator, receiver, media, cc)
    finally:
        await emulator.close()
        ws_server.close()
        await ws_server.wait_closed()
        await listener.close()


async def answered_call(rig: Rig, **answer_kwargs: object) -> str:
    cci = await rig.emulator.place_inbound_call("+15550001111", "+15550002222")
    await rig.emulator.wait_webhook(cci, "call.initiated")
    await rig.cc.answer(cci, **answer_kwargs)  # type: ignore[arg-type]
    await rig.emulator.wait_webhook(cci, "call.answered")
    return cci


# --------------------------------------------------------------------------- the inbound flow


async def test_full_inbound_flow(rig: Rig) -> None:
    cci = await rig.emulator.place_inbound_call("+15550001111", "+15550002222")
    await rig.emulator.wait_webhook(cci, "call.initiated")
    initiated = rig.receiver.payloads(cci, "call.initiated")[0]
    assert isinstance(initiated, CallInitiated)
    assert (initiated.direction, initiated.state, initiated.from_) == ("incoming", "parked", "+15550001111")

    result = await rig.cc.answer(cci, stream_url=rig.media.url, client_state={"agent": "sales"})
    assert result.result == "ok"
    await rig.emulator.wait_webhook(cci, "streaming.started")
    await asyncio.wait_for(rig.media.started.wait(), 3)
    assert rig.media.events() == ["connected", "start"]
    assert rig.media.frames[1]["start"]["call_control_id"] == cci  # type: ignore[index]

    answer = rig.emulator.calls[cci].commands[0]
    assert answer.action == "answer" and answer.status == 200
    assert answer.body == {
        "stream_url": rig.media.url,
        "stream_track": "inbound_track",
        "stream_codec": "PCMU",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "client_state": answer.body["client_state"],
        "command_id": result.command_id,
    }
    assert len(result.command_id) == 36

    hangup = await rig.cc.hangup(cci)
    assert not hangup.already_ended
    await rig.emulator.wait_webhook(cci, "call.hangup")
    await asyncio.wait_for(rig.media.closed.wait(), 3)
    assert rig.media.events() == ["connected", "start", "stop"]

    assert rig.receiver.rejected == []
    assert rig.receiver.types(cci) == [
        "call.initiated",
        "call.answered",
        "streaming.started",
        "streaming.stopped",
        "call.hangup",
    ]
    assert all(w.status == 200 for w in rig.emulator.calls[cci].webhooks)
    # client_state set on answer is echoed on every later webhook
    for event in rig.receiver.events[1:]:
        state = event.data.payload.client_state
        assert state is not None and decode_client_state_json(state) == {"agent": "sales"}
    bye = rig.receiver.payloads(cci, "call.hangup")[0]
    assert isinstance(bye, CallHangup)
    assert (bye.hangup_source, bye.hangup_cause) == ("callee", "normal_clearing")

    # hangup on an ended call: 422 / 90018 on the wire, not an error for the client
    again = await rig.cc.hangup(cci)
    assert again.already_ended
    assert rig.emulator.calls[cci].commands[-1].status == 422


async def test_streaming_start_auth_token_then_caller_hangup(rig: Rig) -> None:
    cci = await answered_call(rig)
    await rig.cc.streaming_start(
        cci,
        stream_url=rig.media.url,
        stream_auth_token="s3cret",
        stream_bidirectional_sampling_rate=16000,
        custom_parameters={"agent": "sales"},
    )
    await asyncio.wait_for(rig.media.started.wait(), 3)
    assert rig.media.headers[0]["x-telnyx-streaming-auth-token"] == "s3cret"
    body = rig.emulator.calls[cci].commands[-1].body
    assert body["stream_auth_token"] == "s3cret"
    assert body["stream_bidirectional_sampling_rate"] == 16000
    assert body["custom_parameters"] == [{"name": "agent", "value": "sales"}]

    await rig.emulator.hangup_from_caller(cci)
    await rig.emulator.wait_webhook(cci, "call.hangup")
    assert rig.media.events()[-1] == "stop"
    assert rig.receiver.types(cci)[-2:] == ["streaming.stopped", "call.hangup"]
    bye = rig.receiver.payloads(cci, "call.hangup")[0]
    assert isinstance(bye, CallHangup) and bye.hangup_source == "caller"

    with pytest.raises(CallAlreadyEnded) as info:
        await rig.cc.streaming_stop(cci)
    assert info.value.code == "90018" and info.value.status == 422 and not info.value.retryable


async def test_commands_recorded_with_bodies(rig: Rig) -> None:
    cci = await answered_call(rig, stream_url=rig.media.url)
    await rig.emulator.wait_webhook(cci, "streaming.started")
    await rig.cc.transfer(cci, "sip:agent@example.com", from_="+15550002222", timeout_secs=30)
    await rig.cc.playback_stop(cci, stop="current")
    await rig.cc.streaming_stop(cci, stream_id="32de0dea-53cb-4b21-89a4-9610ba3ed5d1")
    await rig.emulator.wait_webhook(cci, "streaming.stopped")
    commands = rig.emulator.calls[cci].commands
    assert [c.action for c in commands] == ["answer", "transfer", "playback_stop", "streaming_stop"]
    transfer = commands[1].body
    assert transfer["to"] == "sip:agent@example.com" and transfer["from"] == "+15550002222"
    assert transfer["timeout_secs"] == 30
    assert commands[2].body["stop"] == "current"
    assert commands[3].body["stream_id"] == "32de0dea-53cb-4b21-89a4-9610ba3ed5d1"
    assert len({c.command_id for c in commands}) == 4  # a fresh command_id per command


async def test_outbound_dial(rig: Rig) -> None:
    result = await rig.cc.dial(
        connection_id="1684641123236054244", to="+15550003333", from_="+15550002222", stream_url=rig.media.url
    )
    cci = result.call_control_id
    assert result.record_type == "call" and result.call_leg_id
    await rig.emulator.wait_webhook(cci, "streaming.started")
    await asyncio.wait_for(rig.media.started.wait(), 3)
    initiated = rig.receiver.payloads(cci, "call.initiated")[0]
    assert isinstance(initiated, CallInitiated) and initiated.direction == "outgoing"
    assert rig.receiver.types(cci) == ["call.initiated", "call.answered", "streaming.started"]
    # the same dial command_id again is ignored: same call, no new leg
    again = await rig.cc.dial(
        connection_id="1684641123236054244",
        to="+15550003333",
        from_="+15550002222",
        command_id=result.command_id,
    )
    assert again.call_control_id == cci and len(rig.emulator.calls) == 1


# --------------------------------------------------------------------------- idempotency and errors


async def test_command_id_dedupe_applies_once(rig: Rig) -> None:
    cci = await answered_call(rig)
    rig.receiver.files["a.wav"] = make_wav(0.05)
    url = f"{rig.receiver.url}/media/a.wav"
    await rig.cc.playback_start(cci, audio_url=url, command_id="pb-1")
    await rig.cc.playback_start(cci, audio_url=url, command_id="pb-1")
    commands = rig.emulator.calls[cci].commands
    assert [(c.command_id, c.duplicate) for c in commands[-2:]] == [("pb-1", False), ("pb-1", True)]
    assert len(rig.emulator.calls[cci].playbacks) == 1


async def test_lost_response_retry_is_deduplicated(rig: Rig) -> None:
    cci = await rig.emulator.place_inbound_call()
    await rig.emulator.wait_webhook(cci, "call.initiated")
    rig.emulator.faults.fail_next = [500]
    rig.emulator.faults.fail_after_apply = True  # applied, but the client sees a 500 and retries
    result = await rig.cc.answer(cci)
    commands = rig.emulator.calls[cci].commands
    assert [(c.status, c.duplicate, c.command_id) for c in commands] == [
        (500, False, result.command_id),
        (200, True, result.command_id),
    ]
    await rig.emulator.wait_webhook(cci, "call.answered")
    await rig.cc.hangup(cci)
    await rig.emulator.wait_webhook(cci, "call.hangup")
    assert rig.receiver.types(cci).count("call.answered") == 1


async def test_500_then_retry_succeeds(rig: Rig) -> None:
    cci = await answered_call(rig)
    rig.emulator.faults.fail_next = [500, 429]
    rig.emulator.faults.retry_after_s = 0.01
    result = await rig.cc.transfer(cci, "+15550004444")
    transfers = [c for c in rig.emulator.calls[cci].commands if c.action == "transfer"]
    assert [c.status for c in transfers] == [500, 429, 200]
    assert {c.command_id for c in transfers} == {result.command_id}


async def test_retries_are_bounded(rig: Rig) -> None:
    cci = await answered_call(rig)
    rig.emulator.faults.fail_next = [503, 503, 503, 503]
    with pytest.raises(TelnyxServerError) as info:
        await rig.cc.transfer(cci, "+15550004444")
    assert info.value.status == 503 and info.value.retryable
    assert len([c for c in rig.emulator.calls[cci].commands if c.action == "transfer"]) == 3
    assert rig.emulator.faults.fail_next == [503]


async def test_wrong_key_rejected(rig: Rig) -> None:
    cci = await rig.emulator.place_inbound_call()
    async with CallControlClient("wrong", rig.emulator.url, retry=FAST_RETRY) as bad:
        with pytest.raises(TelnyxRejected) as info:
            await bad.answer(cci)
    assert info.value.status == 401 and not info.value.retryable


async def test_connection_refused() -> None:
    emulator = TelnyxEmulator(profile=get_profile("fast"))
    url = await emulator.start()
    await emulator.close()  # nothing listens on that port any more
    async with CallControlClient("test", url, retry=FAST_RETRY) as cc:
        with pytest.raises(ProviderConnectError) as info:
            await cc.hangup("v3:nope")
    assert info.value.retryable and info.value.provider == "telnyx"


async def test_media_drop_reports_streaming_failed(rig: Rig) -> None:
    cci = await answered_call(rig, stream_url=rig.media.url)
    await asyncio.wait_for(rig.media.started.wait(), 3)
    await rig.emulator.drop_media(cci)
    await rig.emulator.wait_webhook(cci, "streaming.failed")
    await asyncio.wait_for(rig.media.closed.wait(), 3)
    assert rig.emulator.calls[cci].state == "answered"  # the call survives its stream


# --------------------------------------------------------------------------- legacy playback


async def test_legacy_playback_fetch_queue_and_timings(rig: Rig) -> None:
    cci = await answered_call(rig)
    rig.receiver.files["one.wav"] = make_wav(0.2)
    rig.receiver.files["two.mp3"] = make_mp3(3)  # 0.216 s
    await rig.cc.playback_start(cci, audio_url=f"{rig.receiver.url}/media/one.wav", client_state="turn-1")
    await rig.cc.playback_start(cci, audio_url=f"{rig.receiver.url}/media/two.mp3")
    inline = base64.b64encode(make_wav(0.05)).decode()
    await rig.cc.playback_start(cci, playback_content=inline)
    await rig.cc.playback_start(cci, audio_url=f"{rig.receiver.url}/media/missing.mp3")
    deadline = asyncio.get_running_loop().time() + 3
    while len(rig.receiver.payloads(cci, "call.playback.ended")) < 4:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)

    one, two, three, missing = rig.emulator.calls[cci].playbacks
    assert one.duration_s == pytest.approx(0.2) and two.duration_s == pytest.approx(0.216)
    assert three.duration_s == pytest.approx(0.05) and three.fetch_started_at is None
    for pb in (one, two):
        assert pb.fetch_started_at is not None and pb.fetch_done_at is not None and pb.started_at is not None
        assert pb.command_at <= pb.fetch_started_at <= pb.fetch_done_at <= pb.started_at
        assert pb.ended_at is not None and pb.duration_s is not None
        assert pb.ended_at - pb.started_at >= pb.duration_s * 0.9
        assert pb.status == "completed" and pb.fetch_status == 200
    assert (
        two.started_at is not None and one.ended_at is not None and two.started_at >= one.ended_at
    )  # queued
    assert missing.status == "file_not_found" and missing.fetch_status == 404

    assert [t for t in rig.receiver.types(cci) if t.startswith("call.playback")] == [
        "call.playback.started",
        "call.playback.ended",
        "call.playback.started",
        "call.playback.ended",
        "call.playback.started",
        "call.playback.ended",
        "call.playback.ended",
    ]
    ended = rig.receiver.payloads(cci, "call.playback.ended")
    assert isinstance(ended[0], CallPlaybackEnded) and (ended[0].media_url or "").endswith("/media/one.wav")
    assert isinstance(ended[2], CallPlaybackEnded) and ended[2].media_url == ""  # inline content


async def test_playback_stop_cancels_current(rig: Rig) -> None:
    cci = await answered_call(rig)
    rig.receiver.files["long.wav"] = make_wav(5.0)
    await rig.cc.playback_start(cci, audio_url=f"{rig.receiver.url}/media/long.wav")
    await rig.emulator.wait_webhook(cci, "call.playback.started")
    await rig.cc.playback_stop(cci)
    record = await rig.emulator.wait_webhook(cci, "call.playback.ended")
    assert b'"status":"cancelled"' in record.body
    pb = rig.emulator.calls[cci].playbacks[0]
    assert pb.status == "cancelled" and pb.ended_at is not None and pb.started_at is not None
    assert pb.ended_at - pb.started_at < 1.0


def test_mp3_header_bytes_are_what_the_comment_says() -> None:
    version, layer, bitrate_index, rate_index = 0, 1, 1, 2  # MPEG-2.5, layer III, 8 kbps, 8000 Hz
    b1 = 0xE0 | (version << 3) | (layer << 1) | 1
    b2 = (bitrate_index << 4) | (rate_index << 2)
    assert bytes([0xFF, b1, b2])[:3] == make_mp3(1)[30:33]
    assert struct.unpack(">I", make_mp3(1)[30:34])[0] >> 21 == 0x7FF  # frame sync


async def test_default_factory_dials_the_simulated_caller(rig: Rig) -> None:
    rig.emulator.caller_factory = None  # the emulator's own SimulatedCaller
    cci = await answered_call(rig)
    await rig.cc.streaming_start(cci, stream_url=rig.media.url, stream_auth_token="tok", client_state="s1")
    await asyncio.wait_for(rig.media.started.wait(), 3)
    assert rig.media.headers[0]["x-telnyx-streaming-auth-token"] == "tok"
    start = rig.media.frames[1]["start"]
    assert start["call_control_id"] == cci  # type: ignore[index]
    await asyncio.sleep(0.1)  # a few 20 ms media frames
    await rig.cc.hangup(cci)
    await rig.emulator.wait_webhook(cci, "call.hangup")
    await asyncio.wait_for(rig.media.closed.wait(), 3)
    events = rig.media.events()
    assert events[:2] == ["connected", "start"] and events[-1] == "stop" and "media" in events


async def test_control_endpoint_rings_the_webhook(rig: Rig) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        url = rig.emulator.url.removesuffix("/v2") + "/_emulator/inbound"
        headers = {"Authorization": "Bearer KEY_test"}
        async with http.post(
            url, json={"from": "+15557770000", "to": "+15558880000"}, headers=headers
        ) as resp:
            assert resp.status == 200
            cci = (await resp.json())["data"]["call_control_id"]
    await rig.emulator.wait_webhook(cci, "call.initiated")
    initiated = rig.receiver.payloads(cci, "call.initiated")[0]
    assert isinstance(initiated, CallInitiated) and initiated.from_ == "+15557770000"
