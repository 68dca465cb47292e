"""The utterance life table: every legal step, and every other step refused (no loop, no audio)."""

from __future__ import annotations

import itertools

import pytest

from mediasrv.agent.utterance import UTTERANCE_TRANSITIONS, UtteranceLife, UtteranceState, UtteranceTrigger
from mediasrv.errors import FlowError

S, T = UtteranceState, UtteranceTrigger

EXPECTED = {
    (S.HELD, T.COMMIT): S.LIVE,
    (S.HELD, T.CANCEL): S.CANCELLED,
    (S.LIVE, T.COMMIT): S.LIVE,
    (S.LIVE, T.PAUSE): S.PAUSED,
    (S.LIVE, T.INTERRUPT): S.INTERRUPTED,
    (S.LIVE, T.CANCEL): S.CANCELLED,
    (S.PAUSED, T.RESUME): S.LIVE,
    (S.PAUSED, T.PAUSE): S.PAUSED,
    (S.PAUSED, T.INTERRUPT): S.INTERRUPTED,
    (S.PAUSED, T.CANCEL): S.CANCELLED,
    (S.INTERRUPTED, T.CANCEL): S.INTERRUPTED,
    (S.CANCELLED, T.CANCEL): S.CANCELLED,
}


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(S, T)))
def test_every_step_is_in_the_table_or_refused(state: UtteranceState, trigger: UtteranceTrigger) -> None:
    life = UtteranceLife()
    life.state = state
    expected = EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(FlowError, match=trigger.value):
            life.fire(trigger)
        assert life.state is state  # a refused step changes nothing
    else:
        assert life.fire(trigger) is expected
    assert (UTTERANCE_TRANSITIONS[state].get(trigger)) is expected


def test_a_reply_that_is_talked_over_then_cut_keeps_its_heard_part() -> None:
    life = UtteranceLife()
    assert not life.committed and not life.stopped  # held: written, not heard
    for trigger, state in [
        (T.COMMIT, S.LIVE),
        (T.PAUSE, S.PAUSED),  # caller voice over it
        (T.RESUME, S.LIVE),  # a backchannel: go on
        (T.PAUSE, S.PAUSED),
        (T.INTERRUPT, S.INTERRUPTED),  # real words: a barge-in
        (T.CANCEL, S.INTERRUPTED),  # its streams are closed; it was still heard in part
    ]:
        assert life.fire(trigger) is state
    assert life.committed and life.stopped


def test_a_dropped_speculation_can_never_play() -> None:
    life = UtteranceLife()
    life.fire(T.CANCEL)
    with pytest.raises(FlowError):
        life.fire(T.COMMIT)
    assert not life.committed
