"""The Telnyx emulator is as strict as Telnyx, and the daemon copes with what Telnyx may send.

Real peers on 127.0.0.1: the daemon in echo mode (it plays each utterance back once the caller
pauses), the Telnyx emulator dialling it with its own SimulatedCaller, and our Call Control
client answering the calls. What is checked (issue 12, "Emulators as strict as the real
services"; docs/providers.md, Telnyx):

* returned audio is played only on a stream answered with ``stream_bidirectional_mode=rtp``,
  and only in chunks of 20 ms to 30 s (Telnyx AsyncAPI page, "Bidirectional Media");
* ``start`` frames with optional fields present, missing and ``null``, and counters that start
  at 1, at arbitrary values or step by 2, all give a call whose echo is as long as what was said
  (no frame lost, none invented by the jitter buffer's concealment);
* a webhook that gets no 2xx is delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from mediasrv.corpus import DEMO_CORPUS, load_labels, read_wav_ulaw
from mediasrv.lab.emulators.caller import SimulatedCaller
from mediasrv.lab.emulators.caller_core import Numbering, StartStyle, StreamSpec, returned_media_problem
from mediasrv.lab.emulators.hosting import listen
from mediasrv.lab.emulators.telnyx import TelnyxEmulator
from mediasrv.profiles import get_profile
from mediasrv.providers.telnyx import messages as m
from mediasrv.providers.telnyx.callcontrol import CallControlClient
from mediasrv.server import MEDIA_PATH, Daemon, ServerConfig, start_daemon

UTTERANCE = DEMO_CORPUS / "dev007.wav"  # "What is the price of the pro plan?"
SPEECH = read_wav_ulaw(UTTERANCE)
_LABEL = next(u for u in load_labels(DEMO_CORPUS).utterances if u.file == UTTERANCE.name)
SPOKEN_S = (_LABEL.speech_end_ms - _LABEL.speech_start_ms) / 1000.0


@dataclass
class Rig:
    daemon: Daemon
    emulator: TelnyxEmulator
    cc: CallControlClient
    media_url: str
    webhook_statuses: list[int]


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    options: dict[str, object] = getattr(request, "param", {})
    daemon, runner, port = await start_daemon(ServerConfig(host="127.0.0.1", port=0, mode="echo"))
    statuses: list[int] = []

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        status = statuses.pop(0) if statuses else 200
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", webhook)
    listener = await listen(app, "127.0.0.1", 0)
    emulator = TelnyxEmulator(
        profile=get_profile("fast"),
        api_key="KEY",
        webhook_url=f"http://127.0.0.1:{listener.port}/hook",
        webhook_retry_delay_s=0.01,
        **options,  # type: ignore[arg-type]
    )
    base_url = await emulator.start()
    try:
        async with CallControlClient("KEY", base_url) as cc:
            yield Rig(daemon, emulator, cc, f"ws://127.0.0.1:{port}{MEDIA_PATH}", statuses)
    finally:
        await emulator.close()
        await listener.close()
        await runner.cleanup()


async def call_and_echo(rig: Rig, *, mode: str = "rtp") -> SimulatedCaller:
    """Ring, answer with our media URL, say an utterance, wait for the echo; returns the caller."""
    cci = await rig.emulator.place_inbound_call()
    await rig.emulator.wait_webhook(cci, "call.initiated")
    await rig.cc.answer(cci, stream_url=rig.media_url, stream_bidirectional_mode=mode)  # type: ignore[arg-type]
    await rig.emulator.wait_webhook(cci, "streaming.started")
    for _ in range(300):
        caller = rig.emulator.calls[cci].caller
        if isinstance(caller, SimulatedCaller) and caller.sent:
            break
        await asyncio.sleep(0.01)
    assert isinstance(caller, SimulatedCaller)
    await caller.say(SPEECH)
    await caller.silence(3.5)  # the echo starts after 400 ms of quiet and lasts about as long
    return caller


@pytest.mark.slow
async def test_audio_sent_back_is_played_only_on_an_rtp_stream(rig: Rig) -> None:
    rtp, mp3 = await asyncio.gather(call_and_echo(rig, mode="rtp"), call_and_echo(rig, mode="mp3"))
    assert rtp.heard and not rtp.rejected_media
    assert rtp.spec.bidirectional_mode == "rtp"
    # Telnyx's default mode is mp3: raw mu-law sent back is not an MP3 file and is never played.
    assert mp3.spec.bidirectional_mode == "mp3"
    assert not mp3.heard and mp3.rejected_media
    assert all("not 'rtp'" in why for _, why in mp3.rejected_media)
    assert not mp3.errors_sent


def test_returned_chunk_bounds() -> None:
    spec = StreamSpec(bidirectional_mode="rtp", bidirectional_codec="PCMU")
    assert returned_media_problem(b"\xff" * 160, spec) is None  # 20 ms
    assert returned_media_problem(b"\xff" * 240_000, spec) is None  # 30 s
    assert returned_media_problem(b"\xff" * 80, spec) is not None  # 10 ms
    assert returned_media_problem(b"\xff" * 240_008, spec) is not None
    assert returned_media_problem(b"\x00" * 640, StreamSpec(bidirectional_codec="L16")) is None
    assert returned_media_problem(b"\xff" * 160, StreamSpec(bidirectional_mode=None)) is not None


async def test_a_short_chunk_sent_back_is_refused_with_invalid_media() -> None:
    """A tiny media server sends one 10 ms chunk and one 20 ms chunk to the simulated caller."""
    got_error = asyncio.Event()
    errors: list[dict[str, object]] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sent = False
        async for msg in ws:
            event = m.INBOUND_DECODER.decode(msg.data)
            if isinstance(event, m.Start) and not sent:
                sent = True
                await ws.send_str(m.media_text(b"\x11" * 80))
                await ws.send_str(m.media_text(b"\x22" * 160))
            if isinstance(event, m.Error):
                errors.append({"code": event.payload.code if event.payload else None})
                got_error.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    listener = await listen(app, "127.0.0.1", 0)
    try:
        async with SimulatedCaller(f"ws://127.0.0.1:{listener.port}/ws") as caller:
            await asyncio.wait_for(got_error.wait(), 3)
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    assert errors == [{"code": m.ERROR_INVALID_MEDIA}]
    assert [f.payload for f in caller.heard] == [b"\x22" * 160]
    assert len(caller.rejected_media) == 1


def whole_echo(caller: SimulatedCaller) -> bool:
    """What came back is about as long as what was said (pre-roll included, tail trimmed), as in
    test_server: none of it lost, nothing invented between its frames (that would double it)."""
    heard_s = len(caller.heard_audio()) / 8000.0
    return SPOKEN_S * 0.9 < heard_s < SPOKEN_S + 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "rig",
    [{"start_styles": ("full", "missing", "null"), "numberings": ("documented", "arbitrary")}],
    indirect=True,
)
async def test_every_start_style_and_numbering_gives_a_whole_echo(rig: Rig) -> None:
    callers = await asyncio.gather(*(call_and_echo(rig) for _ in range(6)))
    styles: set[tuple[StartStyle, bool]] = {
        (c.spec.start_style, c.spec.numbering == Numbering.documented()) for c in callers
    }
    assert len(styles) == 6  # every style with both numberings
    for caller in callers:
        assert caller.sent[0].chunk == caller.spec.numbering.chunk_start
        assert whole_echo(caller), caller.spec
    assert rig.daemon.malformed_total == 0


@pytest.mark.slow
@pytest.mark.parametrize("rig", [{"numberings": (Numbering(chunk_start=7, chunk_step=2),)}], indirect=True)
async def test_chunk_counting_by_two_is_neither_waited_for_nor_concealed(rig: Rig) -> None:
    # Gap 4 of issue 12: a jitter buffer that assumes chunk steps by 1 waits out a "gap"
    # after every frame and conceals it, so the echo came back twice as long as the speech.
    caller = await call_and_echo(rig)
    assert [s.chunk for s in caller.sent[:3]] == [7, 9, 11]
    assert whole_echo(caller)


async def test_a_webhook_without_2xx_is_delivered_again(rig: Rig) -> None:
    rig.webhook_statuses.extend([500, 503])
    cci = await rig.emulator.place_inbound_call()
    record = await rig.emulator.wait_webhook(cci, "call.initiated")
    assert (record.attempts, record.status) == (3, 200)
    assert b'"attempt":3' in record.body
    rig.webhook_statuses.extend([500, 500, 500])
    await rig.cc.answer(cci)
    record = await rig.emulator.wait_webhook(cci, "call.answered")
    assert (record.attempts, record.status) == (3, 500)  # given up after webhook_attempts
