"""The daemon over real sockets: the simulated Telnyx caller streams corpus speech to
`mediasrv serve` (in echo mode) and gets its words back as paced 20 ms frames."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

from mediasrv.corpus import DEMO_CORPUS, load_labels, read_wav_ulaw
from mediasrv.lab.emulators.caller import SimulatedCaller
from mediasrv.server import MEDIA_PATH, ServerConfig, start_daemon

UTTERANCE = DEMO_CORPUS / "dev007.wav"  # "What is the price of the pro plan?"


@pytest.fixture
async def daemon():
    d, runner, port = await start_daemon(
        ServerConfig(host="127.0.0.1", port=0, mode="echo", drain_timeout_s=1.0)
    )
    try:
        yield d, port
    finally:
        await runner.cleanup()


def speech_ms(name: str) -> tuple[int, int]:
    for u in load_labels(DEMO_CORPUS).utterances:
        if u.file == name:
            return u.speech_start_ms, u.speech_end_ms
    raise AssertionError(name)


async def test_caller_hears_its_words_back(daemon) -> None:
    d, port = daemon
    ulaw = read_wav_ulaw(UTTERANCE)
    start_ms, end_ms = speech_ms(UTTERANCE.name)
    async with SimulatedCaller(f"ws://127.0.0.1:{port}{MEDIA_PATH}") as caller:
        utt = await caller.say(ulaw)
        assert utt.started_at is not None
        speech_end_at = utt.started_at + end_ms / 1000.0
        await caller.silence(3.5)
        first = caller.first_audio_after(speech_end_at, skip_silence=True)
        heard = caller.heard_audio()
    assert first is not None, "no audio came back"
    # The echo waits for 400 ms of silence, so the reply starts 0.4-0.7 s after the speech.
    assert 0.3 < first - speech_end_at < 1.0
    # What came back is about as long as what was said (pre-roll included, tail trimmed).
    spoken_s = (end_ms - start_ms) / 1000.0
    assert spoken_s * 0.9 < len(heard) / 8000.0 < spoken_s + 1.0
    # Frames are exact 20 ms PCMU frames, and marks were echoed by the caller.
    assert all(len(f.payload) == 160 for f in caller.heard)
    assert [m.name for m in caller.marks_echoed] == ["echo-1"]
    assert d.calls_total == 1


async def test_malformed_frames_are_counted_and_the_call_goes_on(daemon) -> None:
    d, port = daemon
    ulaw = read_wav_ulaw(UTTERANCE)
    async with SimulatedCaller(f"ws://127.0.0.1:{port}{MEDIA_PATH}") as caller:
        await caller.send_raw("{not json")
        await caller.send_raw('{"event":"media","media":{"payload":"***"}}')
        await caller.send_raw('{"event":"teleport"}')
        utt = await caller.say(ulaw)
        await caller.silence(2.0)
        assert utt.ended_at is not None
        assert caller.first_audio_after(utt.started_at or 0.0, skip_silence=True) is not None
    for _ in range(50):
        if d.calls_total and not d.calls:
            break
        await asyncio.sleep(0.02)
    assert d.malformed_total == 3
    # The daemon's counters are views of its Prometheus series, not a second tally.
    assert d.malformed_total == d.metrics.count("mediasrv_media_frames_malformed_total")
    assert d.frames_in_total == d.metrics.count("mediasrv_media_frames_in_total") > 0
    assert d.calls_failed == 0


async def test_health_and_metrics(daemon) -> None:
    _, port = daemon
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ok"
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    assert "mediasrv_active_calls 0.0" in text
    assert "mediasrv_turn_e2e_ms_bucket" in text


async def test_zero_files_and_no_subprocess_on_the_audio_path(daemon) -> None:
    """Record every file open and process spawn while a whole call runs."""
    _, port = daemon
    ulaw = read_wav_ulaw(UTTERANCE)  # the caller's fixture is read before we start watching
    events: list[tuple[str, tuple[object, ...]]] = []
    watching = {"on": False}
    tmp = tempfile.gettempdir()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if not watching["on"]:
            return
        if event in {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.fork", "os.spawn"}:
            events.append((event, args))
        elif event == "open":
            path, mode = str(args[0]), args[1]
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            if writing or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) or path.startswith(tmp):
                events.append((event, args))

    sys.addaudithook(hook)
    watching["on"] = True
    try:
        async with SimulatedCaller(f"ws://127.0.0.1:{port}{MEDIA_PATH}") as caller:
            await caller.say(ulaw)
            await caller.silence(2.0)
            heard = caller.heard_audio()
    finally:
        watching["on"] = False
    assert len(heard) > 8000, "the call must have produced audio for the check to mean anything"
    assert events == []


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`mediasrv serve` as a process: it answers /healthz, then exits 0 on SIGTERM."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mediasrv", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "mediasrv stopped" in out


async def test_serve_agent_mode_with_emulated_providers_greets_the_caller() -> None:
    """`mediasrv serve --mode agent --emulate fast`: a caller on the media socket hears the agent."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mediasrv",
        "serve",
        "--mode",
        "agent",
        "--port",
        "0",
        "--agent",
        str(Path(__file__).parents[2] / "agents" / "support_typical.json"),
        "--emulate",
        "fast",
        "--records",
        "",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        port = None
        for _ in range(10):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if "listening on http://127.0.0.1:" in line:
                port = int(line.split("127.0.0.1:")[1].split()[0])
                break
        assert port, "the daemon did not start"
        async with SimulatedCaller(f"ws://127.0.0.1:{port}{MEDIA_PATH}") as caller:
            await caller.silence(2.0)
            heard = caller.heard_audio()
        assert len(heard) > 8000 * 0.5, "no greeting audio came back"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    assert proc.returncode == 0
