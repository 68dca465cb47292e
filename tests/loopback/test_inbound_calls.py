"""InboundCalls at the daemon's webhook route: bad webhooks refused and counted, a real inbound
call from the Telnyx emulator answered with our stream URL and carried on the media socket.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from mediasrv.lab.emulators.caller import SimulatedCaller
from mediasrv.lab.emulators.telnyx import TelnyxEmulator
from mediasrv.profiles import get_profile
from mediasrv.providers.telnyx.callcontrol import CallControlClient
from mediasrv.providers.telnyx.calls import InboundCalls
from mediasrv.providers.telnyx.webhooks import WebhookSigner, WebhookVerifier
from mediasrv.server import MEDIA_PATH, WEBHOOK_PATH, Daemon, ServerConfig, start_daemon


@dataclass
class Rig:
    telnyx: TelnyxEmulator
    calls: InboundCalls
    daemon: Daemon
    webhook: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    telnyx = TelnyxEmulator(profile=get_profile("fast"), api_key="k", rng=random.Random(3))
    await telnyx.start()
    stream_url = [""]
    calls = InboundCalls(
        CallControlClient("k", base_url=telnyx.url),
        WebhookVerifier(telnyx.public_key_b64),
        stream_url=lambda: stream_url[0],
    )
    daemon, runner, port = await start_daemon(ServerConfig(port=0), telnyx=calls)
    stream_url[0] = f"ws://127.0.0.1:{port}{MEDIA_PATH}"
    telnyx.webhook_url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        yield Rig(telnyx, calls, daemon, telnyx.webhook_url)
    finally:
        await telnyx.close()
        await runner.cleanup()
        await calls.aclose()


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_forged_and_unreadable_webhooks_are_refused_and_counted(rig: Rig) -> None:
    body = b'{"data":{"event_type":"call.initiated","payload":{}}}'
    forged = WebhookSigner().sign(body, timestamp=int(time.time()))  # another key  # noqa: TID251
    assert await _post(rig.webhook, body, forged) == (401, {"error": "invalid signature"})
    assert await _post(rig.webhook, body, {}) == (401, {"error": "invalid signature"})  # unsigned
    assert rig.calls.rejected == 2
    assert rig.daemon.webhooks_total == 2  # counted by the daemon either way
    assert not rig.daemon.calls  # nothing was answered


async def test_an_inbound_call_is_answered_with_our_stream_and_carried(rig: Rig) -> None:
    connected = asyncio.get_running_loop().create_future()

    async def caller(url: str, headers: dict[str, str], cci: str) -> SimulatedCaller:
        connected.set_result(url)
        return SimulatedCaller(url, headers=headers, call_control_id=cci)

    cci = await rig.telnyx.place_inbound_call(caller=caller)
    url = await asyncio.wait_for(connected, 10)
    assert url == f"{rig.webhook.split('/api')[0].replace('http', 'ws')}{MEDIA_PATH}"  # our stream URL
    for _ in range(200):
        if rig.daemon.calls_total:
            break
        await asyncio.sleep(0.02)
    assert rig.daemon.calls_total == 1  # the media socket the answer asked for reached the daemon
    assert rig.calls.rejected == 0  # the emulator's webhooks carry valid signatures
    await rig.calls.hangup(cci)  # Call Control back to the emulator through the same object
    for _ in range(200):
        if rig.telnyx.calls[cci].ended and not rig.daemon.calls:
            break
        await asyncio.sleep(0.02)
    assert rig.telnyx.calls[cci].ended  # the emulator hung the call up on our command
    assert not rig.daemon.calls  # and its media socket closed
