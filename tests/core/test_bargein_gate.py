"""CallerVoiceGate: which frames heard while the agent talks are the caller (no audio, no loop)."""

from __future__ import annotations

import pytest

from mediasrv.turns.bargein import NOT_CALLER, CallerVoiceGate, GateConfig
from mediasrv.vad import VadResult

LOUD = VadResult(prob=0.9, speech=True, active=True, energy_db=50.0, noise_db=30.0)
"""Voice 20 dB over the floor."""
FAINT = VadResult(prob=0.9, speech=True, active=True, energy_db=33.0, noise_db=30.0)
"""Voice by the network's verdict, 3 dB over the floor (the tail of our echo)."""
QUIET = VadResult(prob=0.05, speech=False, active=True, energy_db=30.0, noise_db=30.0)
"""Hangover: segment still active, no voice in the frame."""


def _run(gate: CallerVoiceGate, frames: list[tuple[VadResult, bool, bool]]) -> list[VadResult | None]:
    """Judge each (vad, audible, echo); None for a frame outside the window."""
    out: list[VadResult | None] = []
    for vad, audible, echo in frames:
        out.append(gate.judge(vad, audible, echo) if gate.watching(audible) else None)
    return out


@pytest.mark.parametrize(
    ("frames", "expected", "echo_frames"),
    [
        # not talking, no tail: the gate stays out of the way (no echo check either)
        ([(LOUD, False, False)] * 3, [None, None, None], 0),
        # our echo: never the caller, counted, whatever its level
        ([(LOUD, True, True)] * 3, [NOT_CALLER] * 3, 3),
        # voice only by the network's memory (3 dB over the floor): not the caller
        ([(FAINT, True, False)] * 3, [NOT_CALLER] * 3, 0),
        # real caller voice over the agent: the first frame waits, the second counts
        ([(LOUD, True, False)] * 3, [NOT_CALLER, LOUD, LOUD], 0),
        # an echo frame in the middle restarts the debounce
        (
            [(LOUD, True, False), (LOUD, True, True), (LOUD, True, False), (LOUD, True, False)],
            [NOT_CALLER, NOT_CALLER, NOT_CALLER, LOUD],
            1,
        ),
        # hangover frames pass unchanged (the detector judges silence itself)
        ([(QUIET, True, False)], [QUIET], 0),
    ],
)
def test_gate_rules(
    frames: list[tuple[VadResult, bool, bool]], expected: list[VadResult | None], echo_frames: int
) -> None:
    gate = CallerVoiceGate()
    assert _run(gate, frames) == expected
    assert gate.echo_frames == echo_frames


def test_the_echo_tail_is_watched_then_released() -> None:
    cfg = GateConfig(echo_tail_frames=3)
    gate = CallerVoiceGate(cfg)
    # audible once, then 3 frames of tail: judged (echo still possible), but with the agent
    # silent the debounce and level rules do not hold the caller back
    out = _run(gate, [(LOUD, True, True)] + [(FAINT, False, False)] * 4)
    assert out == [NOT_CALLER, FAINT, FAINT, FAINT, None]
    assert gate.heard_echo is False


def test_echo_frames_are_heard_as_silence_by_the_listeners() -> None:
    gate = CallerVoiceGate()
    gate.watching(True)
    gate.judge(QUIET, True, True)
    assert gate.heard_echo  # even a quiet frame of our echo: the supervisor hears silence
    assert not gate.caller_active(gate.judge(LOUD, True, True))
    gate.judge(LOUD, True, False)
    assert gate.caller_active(gate.judge(LOUD, True, False))
