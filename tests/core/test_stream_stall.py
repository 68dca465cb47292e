"""A media stream that stops sending while the caller's turn is open still ends the turn.

The runner is fed frames directly (no sockets); the VAD is scripted (voice, then nothing) and the
STT port only counts what it is sent. After the last frame no audio arrives at all: the runner's
stall watch must hear the missing time as silence and the turn detector must close the turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mediasrv.agent.config import AgentConfig
from mediasrv.agent.runner import STALL_S, AgentRunner
from mediasrv.turns import TurnState
from mediasrv.vad import VadResult

FRAME = b"\x00" * 160
VOICE = VadResult(prob=0.95, speech=True, active=True, energy_db=60.0, noise_db=20.0)
QUIET = VadResult(prob=0.01, speech=False, active=False, energy_db=20.0, noise_db=20.0)


def _scripted_vad(ulaw: bytes) -> VadResult:
    """Voice for the test's frames, quiet for mu-law silence (what the stall watch feeds)."""
    return QUIET if ulaw[0] == 0xFF else VOICE


class _Stt:
    def __init__(self) -> None:
        self.frames = 0

    async def open(self, call_ref: str) -> None: ...
    def send_audio(self, ulaw: bytes) -> None:
        self.frames += 1

    def finalize(self) -> None: ...
    def events(self) -> object: ...
    async def close(self) -> None: ...


class _Tts:
    async def close(self) -> None: ...


class _Call:
    call_id = "c1"

    def is_speaking(self) -> bool:
        return False

    def add_frame_listener(self, listener: Callable[[bytes], None]) -> None: ...


async def test_a_stalled_stream_is_heard_as_silence_and_the_turn_ends() -> None:
    stt = _Stt()
    runner = AgentRunner(AgentConfig(name="t"), stt=stt, llm=None, tts=_Tts())  # type: ignore[arg-type]
    runner.call = _Call()  # type: ignore[assignment]
    runner.vad.process_ulaw = _scripted_vad  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    for _ in range(40):  # 800 ms of voice (enough to be a turn without words)
        runner.on_audio(FRAME, loop.time())
    assert runner.turns.state is TurnState.USER_SPEAKING
    assert runner.counters.stalled_frames == 0
    # the stream stops: no frame for 1.5 s; nothing but the stall watch can move the turn on
    await asyncio.sleep(STALL_S + 1.0)
    # the silence it needed to end a wordless turn (heard in steps of STALL_S), then it stopped
    # (nothing left pending)
    needed = runner.turns.config.no_text_wait_ms // 20
    assert needed <= runner.counters.stalled_frames < needed + int(STALL_S / 0.02) + 1
    assert stt.frames == 40 + runner.counters.stalled_frames  # the STT heard the silence too
    assert runner.turns.state is TurnState.LISTENING  # the wordless turn was ended
    heard = runner.counters.stalled_frames
    await asyncio.sleep(STALL_S + 0.1)
    assert runner.counters.stalled_frames == heard  # nothing pending: the watch stopped
    # the stream comes back with the frames it held: their time was heard already, they are dropped
    for _ in range(5):
        runner.on_audio(FRAME, loop.time())
    assert runner.counters.late_frames_dropped == 5
    assert stt.frames == 40 + runner.counters.stalled_frames
    await runner.close()


async def test_frames_that_keep_coming_are_not_doubled_by_the_watch() -> None:
    stt = _Stt()
    runner = AgentRunner(AgentConfig(name="t"), stt=stt, llm=None, tts=_Tts())  # type: ignore[arg-type]
    runner.call = _Call()  # type: ignore[assignment]
    runner.vad.process_ulaw = _scripted_vad  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    for _ in range(int(3 * STALL_S / 0.02)):  # frames every 20 ms for three stall periods
        runner.on_audio(FRAME, loop.time())
        await asyncio.sleep(0.02)
    assert runner.counters.stalled_frames == 0
    await runner.close()
