"""`mediasrv emulate NAME`: each emulator runs alone as a process, prints its URL, and answers
a real client on it (the way a user points their own client at it)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import openai
import websockets

URL = re.compile(r"(wss?|https?)://127\.0\.0\.1:\d+\S*")


@contextmanager
def emulator(name: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mediasrv", "emulate", name, "--port", "0", "--profile", "fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = URL.search(line)
        assert match, f"{name}: no URL in {line!r}"
        yield match.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_openai_emulator_answers_the_openai_sdk() -> None:
    with emulator("openai") as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="test", max_retries=0)
        try:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "What time do you close on Saturday?"}],
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        finally:
            await client.close()
    assert len(text.split()) >= 3


async def test_soniox_emulator_takes_a_session_config() -> None:
    with emulator("soniox") as url:
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer test"}) as ws:
            config = {"model": "stt-rt-v4", "audio_format": "mulaw", "sample_rate": 8000, "num_channels": 1}
            await ws.send(json.dumps(config))
            await ws.send(b"\xff" * 1600)
            await ws.send("")  # end of audio: the server flushes and says finished
            last = json.loads(await asyncio.wait_for(ws.recv(), 5))
            while not last.get("finished"):
                last = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert last["finished"] is True


async def test_elevenlabs_emulator_speaks_a_context() -> None:
    with emulator("elevenlabs") as url:
        query = "model_id=eleven_flash_v2_5&output_format=ulaw_8000"
        ws_url = f"{url}/v1/text-to-speech/voice1/multi-stream-input?{query}"
        async with websockets.connect(ws_url, additional_headers={"xi-api-key": "test"}) as ws:
            await ws.send(json.dumps({"text": " ", "context_id": "c1"}))
            await ws.send(json.dumps({"text": "Hello there. ", "context_id": "c1", "flush": True}))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert msg.get("contextId") == "c1" and msg.get("audio")


async def test_telnyx_emulator_serves_call_control() -> None:
    with emulator("telnyx") as url:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{url}/calls/unknown-call/actions/hangup", json={}, headers={"Authorization": "Bearer test"}
            ) as r:
                body = await r.json()
    # An unknown call is refused in Telnyx's error shape (not a crash, not an HTML page).
    assert r.status >= 400 and "errors" in body
