"""ElevenLabsClient against the ElevenLabs emulator over 127.0.0.1 (real sockets, no mocks).

Also: the emulator's wire rules driven by a raw ``websockets`` client, and the vendor SDK
(``elevenlabs`` on PyPI) driven against the emulator over TLS.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import websockets

from mediasrv.errors import LocalProtocolError, ProviderRejected
from mediasrv.lab.emulators.elevenlabs import ElevenLabsEmulator
from mediasrv.lab.emulators.voice import render_text_ms
from mediasrv.profiles import get_profile
from mediasrv.providers.elevenlabs import (
    AudioChunk,
    ContextDone,
    ElevenLabsClient,
    ElevenLabsConfig,
    TtsError,
    TtsEvent,
)

KEY = "test-key"
# Flash-like TTFB from the `fast` profile, audio produced 8x faster than real time to keep tests short.
PROFILE = msgspec.structs.replace(get_profile("fast"), tts_realtime_factor=8.0, jitter_ms=5)
REPLY = ["Sure, ", "your balance is ", "ten dollars. "]


class Recorder:
    """Collects (loop time, event) as the client delivers them."""

    def __init__(self) -> None:
        self.events: list[tuple[float, TtsEvent]] = []
        self._changed = asyncio.Event()

    def __call__(self, event: TtsEvent) -> None:
        self.events.append((asyncio.get_running_loop().time(), event))
        self._changed.set()

    def chunks(self, ctx: str) -> list[tuple[float, AudioChunk]]:
        return [(t, e) for t, e in self.events if isinstance(e, AudioChunk) and e.context_id == ctx]

    def audio_ms(self, ctx: str) -> float:
        return sum(e.audio_ms for _, e in self.chunks(ctx))

    def done(self, ctx: str) -> ContextDone | None:
        return next((e for _, e in self.events if isinstance(e, ContextDone) and e.context_id == ctx), None)

    async def wait(self, predicate: object, limit_s: float = 5.0) -> None:
        assert callable(predicate)
        async with asyncio.timeout(limit_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def emulator() -> AsyncIterator[ElevenLabsEmulator]:
    emu = ElevenLabsEmulator(profile=PROFILE, api_key=KEY, rng=random.Random(7))
    await emu.start()
    yield emu
    await emu.close()


def make_client(
    emu: ElevenLabsEmulator,
    rec: Recorder,
    *,
    config: ElevenLabsConfig | None = None,
    output_format: str = "ulaw_8000",
) -> ElevenLabsClient:
    return ElevenLabsClient(
        config or ElevenLabsConfig(reconnect_backoff_s=0.01),
        api_key=KEY,
        voice_id="voice1",
        base_url=emu.url,
        output_format=output_format,
        on_event=rec,
        rng=random.Random(1),
    )


async def speak(client: ElevenLabsClient, pieces: list[str], gap_s: float = 0.03) -> str:
    ctx = client.new_context()
    for piece in pieces:
        await client.send_text(ctx, piece, flush=True)
        await asyncio.sleep(gap_s)
    await client.end(ctx)
    return ctx


async def test_reply_in_three_pieces_streams_chunk_by_chunk(emulator: ElevenLabsEmulator) -> None:
    rec = Recorder()
    async with make_client(emulator, rec) as client:
        ctx = await speak(client, REPLY)
        await rec.wait(lambda: rec.done(ctx) is not None)
        stats = client.stats(ctx)
    chunks = rec.chunks(ctx)
    times = [t for t, _ in chunks]
    assert len(chunks) > 3
    assert times == sorted(times) and times[-1] - times[0] > 0.1  # spread out, not one burst
    assert chunks[0][1].first and not any(c.first for _, c in chunks[1:])
    # Duration follows the text (~65 ms per character), exactly what the emulator rendered.
    assert rec.audio_ms(ctx) == pytest.approx(render_text_ms("".join(REPLY)), abs=2)
    assert rec.events[-1][1] == ContextDone(context_id=ctx)
    assert stats.ttfb_ms is not None and 150 <= stats.ttfb_ms < 400
    assert stats.chars_voiced == len("".join(REPLY))
    session = emulator.sessions[0]
    assert session.query["sync_alignment"] == "true" and session.query["output_format"] == "ulaw_8000"
    assert session.headers_key == KEY and session.finals == [ctx]


async def test_each_context_times_out_on_its_own_unless_kept_alive(emulator: ElevenLabsEmulator) -> None:
    """Multi-context: a context no message names for inactivity_timeout is closed by the server
    (SDK KeepContextAlive: "resetting its inactivity timeout"); our per-context keepalive holds a
    context that waits (a held speculative reply) open."""
    rec = Recorder()
    idle = ElevenLabsConfig(inactivity_timeout_s=1, keepalive_interval_s=30.0, reconnect_backoff_s=0.01)
    async with make_client(emulator, rec, config=idle) as client:
        ctx = client.new_context()
        await client.send_text(ctx, "Held. ", flush=True)
        await rec.wait(lambda: rec.done(ctx) is not None, limit_s=3.0)
    assert emulator.sessions[0].timed_out == [ctx]

    rec = Recorder()
    kept = ElevenLabsConfig(inactivity_timeout_s=1, keepalive_interval_s=0.3, reconnect_backoff_s=0.01)
    async with make_client(emulator, rec, config=kept) as client:
        ctx = client.new_context()
        await client.send_text(ctx, "Held. ", flush=True)
        await asyncio.sleep(1.6)
        assert rec.done(ctx) is None
        await client.end(ctx)
        await rec.wait(lambda: rec.done(ctx) is not None)
    session = emulator.sessions[1]
    assert session.timed_out == [] and session.finals == [ctx]
    assert any(m.text == "" and m.context_id == ctx and not m.flush for m in session.messages)


async def test_barge_in_stops_audio_and_next_reply_uses_same_socket(emulator: ElevenLabsEmulator) -> None:
    rec = Recorder()
    first_text = "This is a long answer that the caller will interrupt, "
    async with make_client(emulator, rec) as client:
        first = client.new_context()
        await client.send_text(first, first_text, flush=True)  # the LLM is still streaming
        await rec.wait(lambda: len(rec.chunks(first)) >= 2)
        await client.close_context(first)
        closed_at = asyncio.get_running_loop().time()
        second = await speak(client, ["Okay, go ahead. "])
        await rec.wait(lambda: rec.done(second) is not None)
    assert rec.done(first) == ContextDone(context_id=first, cancelled=True)
    assert all(t <= closed_at for t, _ in rec.chunks(first))
    assert rec.audio_ms(first) < render_text_ms(first_text) / 2
    assert rec.audio_ms(second) == pytest.approx(render_text_ms("Okay, go ahead. "), abs=2)
    session = emulator.sessions[0]
    assert len(emulator.sessions) == 1 and session.finals == [first, second]
    assert session.audio_ms[first] < render_text_ms(first_text) / 2  # the server stopped generating


async def test_client_refuses_a_sixth_context_the_server_would_reject(emulator: ElevenLabsEmulator) -> None:
    rec = Recorder()
    async with make_client(emulator, rec) as client:
        ids = [client.new_context() for _ in range(6)]
        for ctx in ids[:5]:
            await client.send_text(ctx, "Hold on. ")
        with pytest.raises(LocalProtocolError):
            await client.send_text(ids[5], "One more. ")
        for ctx in ids[:5]:
            await client.close_context(ctx)
        await client.send_text(ids[5], "One more. ", flush=True)
        await client.end(ids[5])
        await rec.wait(lambda: rec.done(ids[5]) is not None)
    assert emulator.sessions[0].errors == [] and len(emulator.sessions) == 1


async def test_emulator_rejects_a_sixth_context_with_1008(emulator: ElevenLabsEmulator) -> None:
    url = f"{emulator.url}/v1/text-to-speech/v/multi-stream-input?output_format=ulaw_8000"
    async with websockets.connect(url, additional_headers={"xi-api-key": KEY}) as ws:
        for i in range(6):
            await ws.send(msgspec.json.encode({"text": " ", "context_id": f"c{i}"}).decode())
        error = msgspec.json.decode(await ws.recv())
        assert error["error"] == "max_active_conversations"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_server_error_fails_the_reply_and_the_next_one_works(emulator: ElevenLabsEmulator) -> None:
    rec = Recorder()
    emulator.faults.error_after_chunks = 2
    async with make_client(emulator, rec) as client:
        first = await speak(client, REPLY)
        await rec.wait(lambda: rec.done(first) is not None)
        second = await speak(client, ["Sorry about that. "])  # sent on the new socket once it is up
        await rec.wait(lambda: rec.done(second) is not None)
    errors = [e for _, e in rec.events if isinstance(e, TtsError)]
    assert errors[0].error == "emulated_error" and errors[0].code == 1008
    assert rec.done(first) == ContextDone(context_id=first, cancelled=True)
    assert rec.done(second) == ContextDone(context_id=second)
    assert client.reconnects == 1 and len(emulator.sessions) == 2


@pytest.mark.parametrize("sync_alignment", [True, False])
async def test_drop_mid_reply_resumes_on_a_new_connection(
    emulator: ElevenLabsEmulator, sync_alignment: bool
) -> None:
    rec = Recorder()
    emulator.faults.drop_after_chunks = 4
    text = ["Your appointment is on Tuesday ", "at three in the afternoon. "]
    config = ElevenLabsConfig(reconnect_backoff_s=0.01, sync_alignment=sync_alignment)
    async with make_client(emulator, rec, config=config) as client:
        ctx = await speak(client, text)
        await rec.wait(lambda: rec.done(ctx) is not None)
        stats = client.stats(ctx)
    assert rec.done(ctx) == ContextDone(context_id=ctx)
    assert len(emulator.sessions) == 2 and stats.resumes == 1 and client.reconnects == 1
    expected = render_text_ms("".join(text))
    delivered = rec.audio_ms(ctx)
    # Whole reply heard once: nothing missing, at most a word's worth (~0.3 s) replayed.
    assert expected - 5 <= delivered <= expected + 300
    resumed = emulator.sessions[1]
    assert resumed.contexts == [f"{ctx}~1"]
    if sync_alignment:
        assert len(resumed.generated_text[f"{ctx}~1"]) < len("".join(text))  # only the unvoiced part


async def test_pcm_16000_is_converted_to_mulaw_of_the_right_length(emulator: ElevenLabsEmulator) -> None:
    rec = Recorder()
    async with make_client(emulator, rec, output_format="pcm_16000") as client:
        ctx = await speak(client, ["Thank you for calling. "])
        await rec.wait(lambda: rec.done(ctx) is not None)
    assert emulator.sessions[0].query["output_format"] == "pcm_16000"
    assert emulator.sessions[0].audio_ms[ctx] == pytest.approx(
        render_text_ms("Thank you for calling. "), abs=1
    )
    total = b"".join(c.ulaw for _, c in rec.chunks(ctx))
    assert len(total) == round(render_text_ms("Thank you for calling. ") * 8)


async def test_wrong_api_key_is_rejected_before_the_upgrade(emulator: ElevenLabsEmulator) -> None:
    client = ElevenLabsClient(api_key="wrong", voice_id="v", base_url=emulator.url)
    with pytest.raises(ProviderRejected) as info:
        await client.connect()
    assert info.value.status == 401
    await client.aclose()


async def test_single_context_stream_input_eos_closes_after_final(emulator: ElevenLabsEmulator) -> None:
    url = f"{emulator.url}/v1/text-to-speech/v/stream-input?output_format=pcm_8000&sync_alignment=true"
    received: list[dict[str, object]] = []
    async with websockets.connect(url) as ws:
        await ws.send('{"text": "Hello. "}')  # not the required single space
        assert "error" in msgspec.json.decode(await ws.recv())
    async with websockets.connect(url) as ws:
        await ws.send(msgspec.json.encode({"text": " ", "xi_api_key": KEY}).decode())
        await ws.send('{"text": "Hi there. "}')
        await ws.send('{"text": ""}')
        with pytest.raises(websockets.ConnectionClosedOK):
            while True:
                received.append(msgspec.json.decode(await ws.recv()))
    assert received[-1] == {"isFinal": True}
    audio = [m for m in received if "audio" in m]
    assert all("contextId" not in m and "alignment" in m for m in audio)
    chars = "".join("".join(m["alignment"]["chars"]) for m in audio)  # type: ignore[index]
    assert chars == "Hi there. "


async def test_inactivity_timeout_closes_the_socket(emulator: ElevenLabsEmulator) -> None:
    url = (
        f"{emulator.url}/v1/text-to-speech/v/multi-stream-input?output_format=ulaw_8000&inactivity_timeout=1"
    )
    async with websockets.connect(url, additional_headers={"xi-api-key": KEY}) as ws:
        started = asyncio.get_running_loop().time()
        error = msgspec.json.decode(await ws.recv())
        assert error["error"] == "input_timeout_exceeded"
        assert 0.9 <= asyncio.get_running_loop().time() - started < 2.0


# --------------------------------------------------------------------------- vendor SDK

# The SDK forces ``wss`` (elevenlabs/realtime_tts.py: ``urlparse(base_url)._replace(scheme="wss")``),
# so the emulator serves TLS with this throw-away certificate for 127.0.0.1 (valid to 2126).
CERT = """-----BEGIN CERTIFICATE-----
MIIBjzCCATagAwIBAgIUANQRX/SfjsOrxRgMxVLqmOkKvQcwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyNDIwMzQ1MloYDzIxMjYxMDMx
MjAzNDUyWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARK1fIQBgW0QNQF+uzngULgz5Jbo5CGy+/LEK/QrOCDK/yzmu1ZfmMD
EuZrijsV3o1UwYVjsMmg/NMhifBQdM/Jo2QwYjAdBgNVHQ4EFgQUznI4C6gZjTBZ
dFqtGiq+fnYmcUowHwYDVR0jBBgwFoAUznI4C6gZjTBZdFqtGiq+fnYmcUowDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0cAMEQC
IAeq7XFed76q2VrWWq+G9JBzHZ6wz1VHPdnI7F0zBwCsAiBAiuPekhxKl1i6NS5o
Q8bbO4z7cAVQvzaPmjJAd/YUQQ==
-----END CERTIFICATE-----
"""
KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgdDV5U02xAzx23tFN
ynVbznh/qH9SzGhkv1xovkejLaOhRANCAARK1fIQBgW0QNQF+uzngULgz5Jbo5CG
y+/LEK/QrOCDK/yzmu1ZfmMDEuZrijsV3o1UwYVjsMmg/NMhifBQdM/J
-----END PRIVATE KEY-----
"""


# elevenlabs/realtime_tts.py:151 reads ``ConnectionClosed.code``, deprecated since websockets 13.1.
@pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning")
async def test_vendor_sdk_convert_realtime_against_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from elevenlabs.client import ElevenLabs

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(CERT)
    key.write_text(KEY_PEM)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the SDK's default context trusts our cert
    emu = ElevenLabsEmulator(profile=PROFILE, api_key=KEY)
    url = await emu.start(ssl_context=server_ssl)
    text = ["Hello from the SDK. ", "It streams text in."]
    try:
        sdk = ElevenLabs(api_key=KEY, base_url=url.replace("wss://", "https://"))
        audio = await asyncio.to_thread(
            lambda: b"".join(
                sdk.text_to_speech.convert_realtime(
                    voice_id="voice1",
                    text=iter(text),
                    model_id="eleven_flash_v2_5",
                    output_format="ulaw_8000",
                )
            )
        )
    finally:
        await emu.close()
    session = emu.sessions[0]
    assert session.path == "/v1/text-to-speech/voice1/stream-input" and session.headers_key == KEY
    assert session.query == {"model_id": "eleven_flash_v2_5", "output_format": "ulaw_8000"}
    assert len(audio) == round(render_text_ms(session.generated_text["default"]) * 8)
    assert session.generated_text["default"].split() == " ".join(text).split()
