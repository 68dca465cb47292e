"""The runner's per-frame guard: a step that raises is counted by stage and the call goes on.

Core-level: the runner is fed frames directly (no sockets, no event loop); the providers are
stubs that are never reached on this path but for the STT, which counts the audio it is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from mediasrv.agent.config import AgentConfig
from mediasrv.agent.runner import AgentRunner
from mediasrv.metrics import FRAME_STAGES, Metrics

FRAME = 160
SILENCE = b"\xff" * FRAME
N = 20


class _Stt:
    """STT port that only counts the frames it is sent."""

    def __init__(self) -> None:
        self.frames = 0

    async def open(self, call_ref: str) -> None: ...
    def send_audio(self, ulaw: bytes) -> None:
        self.frames += 1

    def finalize(self) -> None: ...
    def events(self) -> object: ...
    async def close(self) -> None: ...


class _Call:
    """A call whose agent is always speaking (so every inbound frame meets the echo guard)."""

    call_id = "c1"

    def is_speaking(self) -> bool:
        return True

    def add_frame_listener(self, listener: Callable[[bytes], None]) -> None: ...


def _runner() -> tuple[AgentRunner, _Stt, Metrics]:
    stt = _Stt()
    runner = AgentRunner(AgentConfig(name="t"), stt=stt, llm=None, tts=None)  # type: ignore[arg-type]
    runner.call = _Call()  # type: ignore[assignment]
    runner.metrics = Metrics()
    return runner, stt, runner.metrics


@pytest.mark.parametrize("stage", FRAME_STAGES)
def test_a_failing_step_is_counted_and_the_call_goes_on(
    stage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner, stt, metrics = _runner()
    failing = True
    reached: list[int] = []  # audio times of the frames the turn detector was given

    def wrap(owner: object, name: str, step_stage: str) -> None:
        real = getattr(owner, name)

        def step(*args: object) -> object:
            if step_stage == "turns":
                reached.append(args[1])  # type: ignore[arg-type]
            if failing and step_stage == stage:
                raise ValueError("first array argument cannot be empty")
            return real(*args)

        monkeypatch.setattr(owner, name, step)

    wrap(runner.vad, "process_ulaw", "vad")
    wrap(runner.echo, "assess_inbound", "echo")
    wrap(runner.turns, "on_vad", "turns")
    with caplog.at_level(logging.WARNING, logger="mediasrv.agent"):
        for i in range(N):
            runner.on_audio(SILENCE, i * 0.02)  # never raises

    assert metrics.count("mediasrv_frames_dropped_total", stage=stage) == N
    assert runner.frames_dropped == {s: N if s == stage else 0 for s in FRAME_STAGES}
    assert stt.frames == N and runner.audio_ms == N * 20
    # Without a VAD decision a frame goes no further; past a failed echo check it goes on.
    assert reached == ([] if stage == "vad" else [(i + 1) * 20 for i in range(N)])
    # Sampled: the 1st, 2nd, 4th, 8th and 16th failure, the traceback only with the first.
    records = [r for r in caplog.records if f" {stage} failed" in r.getMessage()]
    assert [r.getMessage().split("(")[1] for r in records] == [f"{n} so far)" for n in (1, 2, 4, 8, 16)]
    assert records[0].exc_info and not any(r.exc_info for r in records[1:])

    failing = False  # the step works again: the next frames go through and are not counted
    for i in range(N, 2 * N):
        runner.on_audio(SILENCE, i * 0.02)
    assert metrics.count("mediasrv_frames_dropped_total", stage=stage) == N
    assert stt.frames == 2 * N and reached[-N:] == [(i + 1) * 20 for i in range(N, 2 * N)]
