"""ReplyPolicy: the reply decisions of a call, as tables (no loop, no socket, no provider)."""

from __future__ import annotations

import pytest

from mediasrv.agent.conversation import (
    Answer,
    Command,
    DropSpeculation,
    Finalize,
    PlaySpeculation,
    ReplyPolicy,
    Speculate,
)
from mediasrv.providers.soniox.messages import FINALIZE_MIN_GAP_MS
from mediasrv.turns import TurnState

DONE = "What is the price of the pro plan?"
OPEN = "I'm calling about the"


@pytest.mark.parametrize(
    ("text", "speculating_on", "may_speak", "current", "expected"),
    [
        (DONE, None, True, True, [Speculate(DONE)]),  # a pause on current words: speculate
        (DONE, None, True, False, []),  # stale words: wait for the STT (words() starts it)
        (DONE, "what is the price of the pro plan", True, True, []),  # same words (normalised): keep
        (DONE, "what is the", True, True, [DropSpeculation(), Speculate(DONE)]),  # fresher: restart
        (DONE, None, False, True, []),  # replies held / provider failed: say nothing
        ("", None, True, True, []),  # no words: nothing to answer
    ],
)
def test_a_pause(
    text: str, speculating_on: str | None, may_speak: bool, current: bool, expected: list[Command]
) -> None:
    policy = ReplyPolicy()
    got = policy.paused(
        text=text,
        finalize=False,
        audio_ms=5000,
        speculating_on=speculating_on,
        may_speak=may_speak,
        text_is_current=current,
    )
    assert got == expected


def test_finalize_is_asked_when_the_detector_wants_it_within_the_budget() -> None:
    policy = ReplyPolicy()
    kw = {"text": DONE, "speculating_on": DONE, "may_speak": True, "text_is_current": True}
    assert policy.paused(finalize=True, audio_ms=1000, **kw) == [Finalize()]  # type: ignore[arg-type]
    assert policy.paused(finalize=True, audio_ms=1000 + FINALIZE_MIN_GAP_MS - 20, **kw) == []  # type: ignore[arg-type]
    assert policy.paused(finalize=False, audio_ms=9000, **kw) == []  # type: ignore[arg-type]
    assert policy.paused(finalize=True, audio_ms=1000 + FINALIZE_MIN_GAP_MS, **kw) == [Finalize()]  # type: ignore[arg-type]


def test_no_speculation_when_the_agent_does_not_speculate() -> None:
    policy = ReplyPolicy(speculative=False)
    got = policy.paused(
        text=DONE, finalize=False, audio_ms=0, speculating_on=None, may_speak=True, text_is_current=True
    )
    assert got == []
    assert policy.end_of_turn(text=DONE, speculating_on=None, hold=False, failed=False) == [Answer(DONE)]


@pytest.mark.parametrize(
    ("state", "text", "speculating_on", "current", "due", "turn_open", "expected"),
    [
        # in a pause, fresher words restart the speculation once their own pause point is reached
        (
            TurnState.USER_PAUSED,
            DONE,
            "what is the price",
            True,
            True,
            True,
            [DropSpeculation(), Speculate(DONE)],
        ),
        # ... and only drop it while the silence is short of that point
        (TurnState.USER_PAUSED, OPEN, "I'm calling", True, False, True, [DropSpeculation()]),
        # ... or while the words lag the audio
        (TurnState.USER_PAUSED, DONE, None, False, True, True, []),
        # the same words (a non-final turning final): nothing changes
        (TurnState.USER_PAUSED, DONE, DONE, True, True, True, []),
        # no turn opened by a pause: wait for UserPaused
        (TurnState.USER_PAUSED, DONE, None, True, True, False, []),
        # while the caller still talks, a finished sentence starts one
        (TurnState.USER_SPEAKING, DONE, None, True, False, False, [Speculate(DONE)]),
        # ... words that make it unfinished again drop it
        (TurnState.USER_SPEAKING, DONE[:-1] + " for", DONE, True, False, False, [DropSpeculation()]),
        # ... unfinished words alone start nothing
        (TurnState.USER_PAUSING, OPEN, None, True, False, False, []),
        # the agent is talking: words are judged by the detector (overlap), not speculated on
        (TurnState.AGENT_SPEAKING, DONE, None, True, False, False, []),
    ],
)
def test_new_words(
    state: TurnState,
    text: str,
    speculating_on: str | None,
    current: bool,
    due: bool,
    turn_open: bool,
    expected: list[Command],
) -> None:
    got = ReplyPolicy().words(
        state=state,
        text=text,
        speculating_on=speculating_on,
        may_speak=True,
        text_is_current=current,
        speculation_due=due,
        turn_open=turn_open,
    )
    assert got == expected


def test_resumed_speech_drops_the_speculation() -> None:
    assert ReplyPolicy.resumed("so") == [DropSpeculation()]
    assert ReplyPolicy.resumed(None) == []


@pytest.mark.parametrize(
    ("text", "speculating_on", "hold", "failed", "expected"),
    [
        (DONE, DONE.lower().rstrip("?"), False, False, [PlaySpeculation()]),  # a hit
        (DONE, "what is the price", False, False, [DropSpeculation(miss=True), Answer(DONE)]),  # a miss
        (DONE, None, False, False, [Answer(DONE)]),  # no speculation ran
        ("", "noise", False, False, [DropSpeculation(miss=True)]),  # words vanished: nothing to say
        (DONE, DONE, True, False, [DropSpeculation()]),  # a machine answered: hold replies
        (DONE, None, False, True, []),  # a provider failed the call: the fallback line was the last word
    ],
)
def test_end_of_turn(
    text: str, speculating_on: str | None, hold: bool, failed: bool, expected: list[Command]
) -> None:
    assert (
        ReplyPolicy().end_of_turn(text=text, speculating_on=speculating_on, hold=hold, failed=failed)
        == expected
    )
