"""SonioxClient against the Soniox emulator over 127.0.0.1 (real sockets, real corpus audio).

Grouped by docs/providers.md section 3: 3.1 auth, 3.2 config/finalize/keepalive, 3.3 results, and
reconnect/resume after a drop or a 503 (Soniox error-handling: "reconnect and resume").
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable

import pytest

from mediasrv.corpus import dev_corpus, read_wav_ulaw
from mediasrv.errors import ProviderRejected
from mediasrv.lab.emulators.soniox import SonioxEmulator
from mediasrv.lab.emulators.soniox_script import ScriptUtterance
from mediasrv.profiles import PROFILES
from mediasrv.providers.soniox.client import SonioxClient, Timeouts
from mediasrv.providers.soniox.messages import SttConfig
from mediasrv.providers.soniox.stream import Endpoint, FinalWords, Partial, Reconnected, SttError, SttEvent

CORPUS = dev_corpus()
KEY = "test-key"
FRAME = 160  # 20 ms of 8 kHz mu-law
SPEED = 4.0  # faster than real time: the emulator times words on audio, not on the wall clock

pytestmark = pytest.mark.skipif(not (CORPUS / "labels.json").exists(), reason="shared corpus not present")


def _label(name: str) -> dict:
    labels = json.loads((CORPUS / "labels.json").read_text())["utterances"]
    return next(u for u in labels if u["file"] == name)


@pytest.fixture(scope="module")
def dev033() -> tuple[bytes, dict]:
    return read_wav_ulaw(CORPUS / "dev033.wav"), _label("dev033.wav")


async def _feed(stt: SonioxClient, audio: bytes, *, start_ms: int = 0, end_ms: int | None = None) -> None:
    end = len(audio) if end_ms is None else end_ms * 8
    for i in range(start_ms * 8, end, FRAME):
        stt.send_audio(audio[i : i + FRAME])
        await asyncio.sleep(0.02 / SPEED)


class Collector:
    def __init__(self, stt: SonioxClient) -> None:
        self.events: list[SttEvent] = []
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(stt))

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _run(self, stt: SonioxClient) -> None:
        try:
            async for event in stt:
                self.events.append(event)
                self._changed.set()
        except ProviderRejected as exc:
            self.error = exc

    def final_words(self) -> list[str]:
        return [w.text for e in self.events if isinstance(e, FinalWords) for w in e.words]

    def endpoints(self, kind: str) -> list[Endpoint]:
        return [e for e in self.events if isinstance(e, Endpoint) and e.kind == kind]


def _emulator(label: dict, **kwargs) -> SonioxEmulator:
    return SonioxEmulator(
        profile=PROFILES["fast"], script=[ScriptUtterance.from_label(label)], rng=random.Random(3), **kwargs
    )


# --------------------------------------------------------------------------- 3.3 results


async def test_final_transcript_equals_script_and_end_arrives(dev033):
    audio, label = dev033
    async with _emulator(label, api_key=KEY) as emu:
        async with SonioxClient(SttConfig(), url=emu.url, api_key=KEY) as stt:
            got = Collector(stt)
            await _feed(stt, audio)
            await got.until(lambda: got.final_words()[-1:] == ["nine"] and bool(got.endpoints("end")))
        await got.task
    assert stt.assembler.transcript() == label["text"]
    assert got.final_words() == label["text"].split()
    assert got.endpoints("end")[-1].final_text == label["text"]
    assert any(isinstance(e, Partial) and e.text_nonfinal for e in got.events)
    session = emu.sessions[0]
    assert session.auth == "bearer" and session.config is not None
    assert (session.config.audio_format, session.config.sample_rate) == ("mulaw", 8000)
    assert session.audio_ms == len(audio) // 8 and session.ended == "finished"
    assert stt.stats.bytes_sent == len(audio) and stt.stats.reconnects == 0


async def test_words_follow_the_audio_received_not_the_clock(dev033):
    audio, label = dev033
    async with _emulator(label) as emu:
        async with SonioxClient(SttConfig(), url=emu.url) as stt:
            got = Collector(stt)
            await _feed(stt, audio, end_ms=1000)
            await asyncio.sleep(0.3)  # the client stalls: no audio, so no more words
            heard = stt.assembler.transcript() + " " + stt.assembler.nonfinal_text()
            assert "number" not in heard
            await _feed(stt, audio, start_ms=1000)
            await got.until(lambda: got.final_words()[-1:] == ["nine"])
        await got.task
    for message in emu.sessions[0].messages:
        assert message.final_audio_proc_ms <= message.total_audio_proc_ms  # type: ignore[union-attr]
        for token in message.tokens:  # type: ignore[union-attr]
            assert token.end_ms is not None and token.end_ms <= message.total_audio_proc_ms  # type: ignore[union-attr]


async def test_two_utterances_in_one_stream_and_a_script_added_while_running():
    first, label = _label("dev000.wav"), _label("dev008.wav")  # both without line noise
    audio = read_wav_ulaw(CORPUS / "dev008.wav")
    async with _emulator(first) as emu:
        async with SonioxClient(SttConfig(), url=emu.url) as stt:
            got = Collector(stt)
            await _feed(stt, read_wav_ulaw(CORPUS / "dev000.wav"))
            await got.until(lambda: got.final_words()[-1:] == ["better"] and bool(got.endpoints("end")))
            assert stt.assembler.utterance_text() == first["text"]
            stt.assembler.reset_utterance()
            emu.script.add(ScriptUtterance.from_label(label))
            await _feed(stt, audio)
            await got.until(lambda: got.final_words()[-1:] == ["Smith"] and len(got.endpoints("end")) >= 3)
            assert stt.assembler.utterance_text() == label["text"]
        await got.task
    assert stt.assembler.transcript() == f"{first['text']} {label['text']}"


# ---------------------------------------------------------------- 3.2 finalize, keepalive


async def test_finalize_answers_fin_with_the_words_heard(dev033):
    audio, label = dev033
    async with _emulator(label) as emu:
        config = SttConfig(enable_endpoint_detection=False)
        async with SonioxClient(config, url=emu.url) as stt:
            got = Collector(stt)
            await _feed(stt, audio, end_ms=2000)
            sent_at = time.monotonic()
            stt.finalize()
            await got.until(lambda: bool(got.endpoints("fin")))
        await got.task
    fin = got.endpoints("fin")[0]
    assert fin.final_text == "My account number is"
    assert fin.at - sent_at >= (PROFILES["fast"].stt_finalize_ms - PROFILES["fast"].jitter_ms) / 1000
    assert not got.endpoints("end")
    assert emu.sessions[0].finalizes == 1


async def test_keepalive_when_no_audio_flows(dev033):
    _, label = dev033
    async with _emulator(label) as emu:
        async with SonioxClient(SttConfig(), url=emu.url, timeouts=Timeouts(keepalive_s=0.05)) as stt:
            await asyncio.sleep(0.3)
    assert stt.stats.keepalives_sent >= 3 and emu.sessions[0].keepalives == stt.stats.keepalives_sent


# ------------------------------------------------------------------ reconnect and resume


@pytest.mark.parametrize("fault", ["drop", "503"])
async def test_failure_mid_utterance_loses_no_final_word(dev033, fault):
    audio, label = dev033
    async with _emulator(label) as emu:
        if fault == "drop":
            emu.faults.drop_after_ms = 3300  # inside "four five six seven eight nine"
        else:
            emu.faults.error_after_ms = 3300
        async with SonioxClient(SttConfig(), url=emu.url, rng=random.Random(1)) as stt:
            got = Collector(stt)
            await _feed(stt, audio)
            await got.until(lambda: got.final_words()[-1:] == ["nine"])
        await got.task
    assert got.final_words() == label["text"].split()  # complete, nothing twice
    assert stt.assembler.transcript() == label["text"]
    assert stt.stats.reconnects == 1
    reconnected = [e for e in got.events if isinstance(e, Reconnected)]
    assert len(reconnected) == 1 and 0 < reconnected[0].replay_from_ms < 3300
    assert [s.ended for s in emu.sessions] == ["dropped" if fault == "drop" else "error", "finished"]
    if fault == "503":
        errors = [e for e in got.events if isinstance(e, SttError)]
        assert [(e.code, e.retryable) for e in errors] == [(503, True)]
    # the second session heard the replay, so it got more audio than the rest of the file
    assert emu.sessions[1].audio_ms > len(audio) // 8 - emu.sessions[0].audio_ms


async def test_stall_delays_results_then_recovers(dev033):
    audio, label = dev033
    async with _emulator(label) as emu:
        emu.faults.stall_after_ms = 1000
        emu.faults.stall_ms = 400
        async with SonioxClient(SttConfig(), url=emu.url) as stt:
            got = Collector(stt)
            started = time.monotonic()
            await _feed(stt, audio)
            await got.until(lambda: got.final_words()[-1:] == ["nine"])
        await got.task
    assert got.final_words() == label["text"].split()
    first_final = next(e.at for e in got.events if isinstance(e, FinalWords))
    assert first_final - started >= 0.4


# -------------------------------------------------------------------------- 3.1 auth


async def test_wrong_key_is_a_clear_provider_rejected(dev033):
    audio, label = dev033
    async with _emulator(label, api_key=KEY) as emu:
        async with SonioxClient(SttConfig(), url=emu.url, api_key="wrong") as stt:
            got = Collector(stt)
            stt.send_audio(audio[:FRAME])
            await asyncio.wait_for(got.task, 2.0)
    assert isinstance(got.error, ProviderRejected)
    assert got.error.status == 401 and got.error.provider == "soniox" and not got.error.retryable
    assert stt.error is got.error and stt.stats.reconnects == 0


async def test_legacy_api_key_in_config_is_accepted(dev033):
    audio, label = dev033
    async with _emulator(label, api_key=KEY) as emu:
        async with SonioxClient(SttConfig(), url=emu.url, api_key=KEY, legacy_auth=True) as stt:
            await _feed(stt, audio, end_ms=400)
    assert emu.sessions[0].auth == "api_key" and emu.sessions[0].ended == "finished"
    assert stt.error is None


async def test_bad_model_is_rejected_with_400(dev033):
    _, label = dev033
    async with _emulator(label) as emu:
        async with SonioxClient(SttConfig(model="en_v2_jumbo"), url=emu.url) as stt:
            got = Collector(stt)
            await asyncio.wait_for(got.task, 2.0)
    assert isinstance(got.error, ProviderRejected) and got.error.status == 400


# ----------------------------------------------------------------- the vendor's own SDK


async def test_vendor_sdk_realtime_client_drives_the_emulator(dev033):
    """The ``soniox`` PyPI SDK (2.10) can be pointed at the emulator with ``websocket_base_url``."""
    import soniox
    from soniox.types.realtime import RealtimeSTTConfig

    audio, label = dev033
    async with _emulator(label, api_key=KEY) as emu:
        async with soniox.AsyncSonioxClient(api_key=KEY, websocket_base_url=emu.url) as client:
            config = RealtimeSTTConfig(
                model="stt-rt-v4",
                audio_format="mulaw",
                sample_rate=8000,
                num_channels=1,
                enable_endpoint_detection=True,
            )
            finals: list[str] = []
            markers: list[str] = []
            async with client.realtime.stt.connect(config=config) as session:

                async def send() -> None:
                    for i in range(0, len(audio), FRAME):
                        await session.send_byte_chunk(audio[i : i + FRAME])
                        await asyncio.sleep(0.02 / SPEED)
                    await session.finish()

                sender = asyncio.create_task(send())
                finished = False
                async for event in session.receive_events():
                    for token in event.tokens:
                        if token.is_final:
                            (markers if token.text.startswith("<") else finals).append(token.text)
                    finished = finished or event.finished
                await sender
    assert finished
    assert "".join(finals).strip() == label["text"]
    assert "<end>" in markers
    assert emu.sessions[0].auth == "bearer" and emu.sessions[0].ended == "finished"
