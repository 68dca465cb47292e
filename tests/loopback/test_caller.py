"""SimulatedCaller against a small real aiohttp WebSocket server on 127.0.0.1 (port 0).

Timing checks measure and use generous bounds; the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import struct
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web

from mediasrv.codec import ulaw_encode
from mediasrv.corpus import dev_corpus
from mediasrv.lab.emulators.caller import FRAME_BYTES, SILENCE_BYTE, SimulatedCaller, load_wav_ulaw
from mediasrv.lab.emulators.hosting import listen
from mediasrv.providers.telnyx import (
    MarkEchoed,
    MediaReceived,
    StreamConnected,
    StreamErrored,
    StreamStarted,
    StreamStopped,
    TelnyxStream,
)
from mediasrv.providers.telnyx import messages as m

CORPUS_WAV = dev_corpus() / "dev002.wav"


def tone_ulaw(seconds: float, freq_hz: float = 440.0, amplitude: int = 8000) -> bytes:
    n = int(seconds * 8000)
    pcm = struct.pack(
        f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * freq_hz * i / 8000)) for i in range(n))
    )
    return ulaw_encode(pcm)


@dataclass
class ServerSide:
    """One accepted media WebSocket, seen from the server: a real TelnyxStream parses it."""

    ws: web.WebSocketResponse
    headers: dict[str, str]
    stream: TelnyxStream = field(default_factory=TelnyxStream)
    frames: list[tuple[float, str]] = field(default_factory=list)
    events: list[tuple[float, object]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def media(self) -> list[MediaReceived]:
        return [e for _, e in self.events if isinstance(e, MediaReceived)]

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 3.0) -> None:
        async with asyncio.timeout(within_s), self.arrived:
            await self.arrived.wait_for(predicate)

    async def send_audio(self, ulaw: bytes, frame_bytes: int = FRAME_BYTES) -> None:
        for i in range(0, len(ulaw), frame_bytes):
            await self.ws.send_str(self.stream.send_media(ulaw[i : i + frame_bytes]))


@dataclass
class MediaServer:
    url: str
    accepted: asyncio.Queue[ServerSide]


@pytest.fixture
async def server() -> AsyncIterator[MediaServer]:
    accepted: asyncio.Queue[ServerSide] = asyncio.Queue()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        side = ServerSide(ws=ws, headers=dict(request.headers))
        accepted.put_nowait(side)
        loop = asyncio.get_running_loop()
        async for msg in ws:
            now = loop.time()
            if msg.type is not WSMsgType.TEXT:
                continue
            side.frames.append((now, msg.data))
            side.stream.receive_text(msg.data, now)
            async with side.arrived:
                side.events.extend((now, e) for e in side.stream.events_received())
                side.arrived.notify_all()
        side.closed.set()
        return ws

    app = web.Application()
    app.router.add_get("/media", handle)
    listener = await listen(app, "127.0.0.1", 0)
    try:
        yield MediaServer(url=f"ws://{listener.host}:{listener.port}/media", accepted=accepted)
    finally:
        await listener.close()


async def accept(server: MediaServer) -> ServerSide:
    return await asyncio.wait_for(server.accepted.get(), 3.0)


# --------------------------------------------------------------------------- caller -> server


async def test_handshake_frames_and_real_time_pacing(server: MediaServer) -> None:
    caller = SimulatedCaller(
        server.url, auth_token="tok-1", custom_parameters={"agent": "demo"}, rng=random.Random(7)
    )
    await caller.connect()
    side = await accept(server)
    await side.wait_for(lambda: len(side.media()) >= 51)
    await caller.hangup()
    await asyncio.wait_for(side.closed.wait(), 3.0)

    assert side.headers.get("x-telnyx-streaming-auth-token") == "tok-1"
    kinds = [type(e).__name__ for _, e in side.events]
    assert kinds[:2] == ["StreamConnected", "StreamStarted"]
    assert kinds[-1] == "StreamStopped"
    connected, started = side.events[0][1], side.events[1][1]
    assert connected == StreamConnected(version="1.0.0", auth_token="tok-1")
    assert isinstance(started, StreamStarted)
    assert (started.stream_id, started.encoding, started.sample_rate_hz) == (caller.stream_id, "PCMU", 8000)
    assert started.custom_parameters == {"agent": "demo"}
    assert side.stream.malformed == side.stream.unknown_events == 0

    # wire shape: strings for counters, track inbound, 160 B of mu-law silence when not speaking
    first_media = json.loads(next(t for _, t in side.frames if '"media"' in t))
    assert first_media["media"]["track"] == "inbound"
    assert isinstance(first_media["media"]["chunk"], str)
    assert isinstance(first_media["sequence_number"], str)
    assert first_media["stream_id"] == caller.stream_id
    media = side.media()
    assert [e.chunk for e in media] == list(range(1, len(media) + 1))
    assert all(e.payload == bytes([SILENCE_BYTE]) * FRAME_BYTES for e in media)
    # 50 intervals of 20 ms: ~1.0 s (generous bounds; measure, do not over-assert)
    span = media[50].received_at - media[0].received_at
    assert 0.9 < span < 1.4, span


async def test_say_wav_with_resampling_streams_exact_audio(server: MediaServer, tmp_path: Path) -> None:
    # A 16 kHz WAV exercises the resampling path; the 8 kHz corpus file gives the expected frames.
    with wave.open(str(CORPUS_WAV), "rb") as src:
        pcm8 = src.readframes(2400)  # 0.3 s at 8 kHz
    samples = struct.unpack(f"<{len(pcm8) // 2}h", pcm8)
    wav16 = tmp_path / "utt16k.wav"
    with wave.open(str(wav16), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(16000)
        dst.writeframes(struct.pack(f"<{2 * len(samples)}h", *(s for s in samples for _ in range(2))))
    expected = load_wav_ulaw(wav16)
    # 0.3 s at 8 kHz plus the resampler's short filter tail
    assert 2400 <= len(expected) <= 2400 + 40
    assert expected != bytes([SILENCE_BYTE]) * len(expected)

    async with SimulatedCaller(server.url) as caller:
        side = await accept(server)
        utterance = await caller.say(wav16)
        await caller.silence(0.04)
    assert utterance.started_at is not None and utterance.ended_at is not None
    assert utterance.frames == math.ceil(len(expected) / FRAME_BYTES)
    assert 0.2 < utterance.ended_at - utterance.started_at < 0.6
    heard = b"".join(e.payload for e in side.media() if e.payload != bytes([SILENCE_BYTE]) * FRAME_BYTES)
    # the last frame is padded with mu-law silence to 160 bytes
    assert heard[: len(expected)] == expected
    assert heard[len(expected) :] == bytes([SILENCE_BYTE]) * (len(heard) - len(expected))


# --------------------------------------------------------------------------- server -> caller


async def test_mark_echoed_after_preceding_audio_and_at_once_when_idle(server: MediaServer) -> None:
    loop = asyncio.get_running_loop()
    async with SimulatedCaller(server.url) as caller:
        side = await accept(server)
        await side.wait_for(lambda: side.stream.stream_id != "")

        t_idle = loop.time()
        await side.ws.send_str(side.stream.send_mark("idle"))
        await side.wait_for(lambda: any(isinstance(e, MarkEchoed) for _, e in side.events))
        idle_echo = next(t for t, e in side.events if isinstance(e, MarkEchoed))

        audio = tone_ulaw(0.3)
        t_sent = loop.time()
        await side.send_audio(audio)
        await side.ws.send_str(side.stream.send_mark("after-audio"))
        await side.wait_for(lambda: MarkEchoed(name="after-audio") in [e for _, e in side.events])
        audio_echo = next(t for t, e in side.events if e == MarkEchoed(name="after-audio"))

    assert idle_echo - t_idle < 0.1
    assert 0.27 < audio_echo - t_sent < 0.7, audio_echo - t_sent
    assert [e.name for e in caller.marks_echoed] == ["idle", "after-audio"]
    assert not any(e.by_clear for e in caller.marks_echoed)
    assert caller.heard_audio() == audio
    plays = [f.played_at for f in caller.heard]
    assert all(p is not None for p in plays)
    # paced playback: frame k starts 20 ms after frame k-1
    gaps = [b - a for a, b in zip(plays, plays[1:], strict=False)]  # type: ignore[operator]
    assert all(abs(g - 0.02) < 1e-6 for g in gaps)


async def test_clear_drops_queue_and_returns_pending_marks(server: MediaServer) -> None:
    loop = asyncio.get_running_loop()
    async with SimulatedCaller(server.url) as caller:
        side = await accept(server)
        await side.wait_for(lambda: side.stream.stream_id != "")
        await side.send_audio(tone_ulaw(2.0))
        await side.ws.send_str(side.stream.send_mark("end-of-reply"))
        await asyncio.sleep(0.2)
        assert caller.queued_s() > 1.5
        assert caller.marks_echoed == []
        t_clear = loop.time()
        await side.ws.send_str(side.stream.send_clear())
        await side.wait_for(lambda: any(isinstance(e, MarkEchoed) for _, e in side.events))
        echo_at = next(t for t, e in side.events if isinstance(e, MarkEchoed))
        assert caller.queued_s() == 0.0

    assert echo_at - t_clear < 0.15
    assert len(caller.clears_received) == 1
    assert [(e.name, e.by_clear) for e in caller.marks_echoed] == [("end-of-reply", True)]
    played = [f for f in caller.heard if not f.cleared]
    cleared = [f for f in caller.heard if f.cleared]
    assert len(caller.heard) == 100
    assert 5 <= len(played) <= 25  # ~0.2 s of 2 s had started before the clear
    assert all(f.played_at is None for f in cleared)
    assert len(caller.heard_audio()) == FRAME_BYTES * len(played)


async def test_error_replies_for_bad_frames(server: MediaServer) -> None:
    async with SimulatedCaller(server.url) as caller:
        side = await accept(server)
        await side.wait_for(lambda: side.stream.stream_id != "")
        await side.ws.send_str("this is not json")
        await side.ws.send_str('{"event":"media","media":{"payload":"%%%not base64%%%"}}')
        await side.ws.send_str('{"event":"dance"}')
        await side.ws.send_bytes(b"\x00\x01")
        await side.wait_for(lambda: sum(isinstance(e, StreamErrored) for _, e in side.events) >= 4)
    errors = [e for _, e in side.events if isinstance(e, StreamErrored)]
    assert [(e.code, e.title) for e in errors] == [
        (m.ERROR_MALFORMED_FRAME, "malformed_frame"),
        (m.ERROR_INVALID_MEDIA, "invalid_media"),
        (m.ERROR_MALFORMED_FRAME, "malformed_frame"),
        (m.ERROR_MALFORMED_FRAME, "malformed_frame"),
    ]
    assert [code for code, _ in caller.errors_sent] == [100003, 100004, 100003, 100003]
    assert caller.heard == []


async def test_latency_from_end_of_utterance_to_first_agent_audio(server: MediaServer) -> None:
    reply_delay_s = 0.1
    async with SimulatedCaller(server.url) as caller:
        side = await accept(server)
        speech = tone_ulaw(0.2)

        async def agent() -> None:
            # reply once the caller's speech has ended (first silent frame after speech)
            await side.wait_for(lambda: any(e.payload == speech[:FRAME_BYTES] for e in side.media()))
            await side.wait_for(lambda: side.media()[-1].payload == bytes([SILENCE_BYTE]) * FRAME_BYTES)
            await asyncio.sleep(reply_delay_s)
            await side.send_audio(tone_ulaw(0.1, 300.0))

        agent_task = asyncio.create_task(agent())
        utterance = await caller.say(speech)
        await asyncio.wait_for(agent_task, 3.0)
        await asyncio.sleep(0.05)
    assert utterance.ended_at is not None
    first = caller.first_audio_after(utterance.ended_at, skip_silence=True)
    assert first is not None
    assert reply_delay_s < first - utterance.ended_at < reply_delay_s + 0.3
    assert caller.first_playback_after(utterance.ended_at) == pytest.approx(first)


# --------------------------------------------------------------------------- impairments and echo


async def test_reorder_duplicate_drop_patterns(server: MediaServer) -> None:
    caller = SimulatedCaller(server.url, rng=random.Random(1234), reorder_p=0.2, dup_p=0.2, drop_p=0.1)
    await caller.connect()
    side = await accept(server)
    await side.wait_for(lambda: len(side.media()) >= 40)
    await caller.hangup()
    await asyncio.wait_for(side.closed.wait(), 3.0)

    chunks = [e.chunk for e in side.media()]
    assert [s.chunk for s in caller.sent] == chunks  # the server saw exactly the wire order
    dropped = {s.chunk for s in caller.dropped}
    duplicates = [a for a, b in zip(chunks, chunks[1:], strict=False) if a == b]
    swaps = [(a, b) for a, b in zip(chunks, chunks[1:], strict=False) if b < a]
    assert dropped and duplicates and swaps, (dropped, duplicates, swaps)
    assert not dropped & set(chunks)
    assert set(chunks) | dropped == set(range(1, max(set(chunks) | dropped) + 1))
    # the server's TelnyxStream accepted every impaired frame
    assert side.stream.malformed == 0


async def test_echo_path_mixes_played_audio_back_into_the_line(server: MediaServer) -> None:
    silence = bytes([SILENCE_BYTE]) * FRAME_BYTES
    async with SimulatedCaller(server.url, echo_gain_db=-6.0, echo_delay_ms=40.0) as caller:
        side = await accept(server)
        await side.wait_for(lambda: side.stream.stream_id != "")
        n_before = len(side.media())
        await side.send_audio(tone_ulaw(0.1, amplitude=12000))
        await side.wait_for(lambda: any(e.payload != silence for e in side.media()[n_before:]))
        caller.mix_in(tone_ulaw(0.06, 1000.0), gain_db=0.0, delay_ms=0.0)
        await asyncio.sleep(0.2)
    echoed = [e for e in side.media()[n_before:] if e.payload != silence]
    assert 4 <= len(echoed) <= 15
    assert caller.first_audio_after(0.0) is not None


async def test_server_close_is_noticed(server: MediaServer) -> None:
    caller = SimulatedCaller(server.url)
    await caller.connect()
    side = await accept(server)
    await side.wait_for(lambda: side.stream.stream_id != "")
    await side.ws.close()
    await asyncio.wait_for(caller.closed.wait(), 3.0)
    assert caller.closed_by_server
    await caller.hangup()  # still safe
    assert not any(isinstance(e, StreamStopped) for _, e in side.events)
