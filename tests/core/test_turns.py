"""TurnDetector and the completeness scorer: scripted VAD/token sequences, no audio."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediasrv.turns import (
    TRANSITIONS,
    AnyTurnEvent,
    Backchannel,
    BargeIn,
    Completeness,
    EndOfTurn,
    FalseStart,
    OverlapDiscarded,
    OverlapStarted,
    Trigger,
    TurnConfig,
    TurnDetector,
    TurnState,
    UserPaused,
    UserResumed,
    UserStarted,
    assess_completeness,
)

FRAME_MS = 20


@dataclass(frozen=True)
class Frame:
    """A VAD verdict (the detector reads only these two fields)."""

    speech: bool
    active: bool


VOICE = Frame(speech=True, active=True)
QUIET = Frame(speech=False, active=False)


class Call:
    """Drives a detector through audio time and collects its events with their times."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        self.det = TurnDetector(config)
        self.t = 0
        self.events: list[AnyTurnEvent] = []
        self.pending: list[tuple[int, str, str, int | None]] = []

    def say(self, final: str, nonfinal: str, at_ms: int, audio_end_ms: int | None = None) -> None:
        self.pending.append((at_ms, final, nonfinal, audio_end_ms))

    def run(self, until_ms: int, frame: Frame) -> None:
        while self.t < until_ms:
            self.t += FRAME_MS
            self.det.on_vad(frame, self.t)
            for item in [p for p in self.pending if p[0] <= self.t]:
                self.pending.remove(item)
                self.det.on_tokens(item[1], item[2], self.t, audio_end_ms=item[3])
            self.events += self.det.events_received()

    def voice(self, ms: int) -> None:
        self.run(self.t + ms, VOICE)

    def quiet(self, ms: int) -> None:
        self.run(self.t + ms, QUIET)

    def of(self, kind: type) -> list[AnyTurnEvent]:
        return [e for e in self.events if isinstance(e, kind)]


# ------------------------------------------------------------------- completeness rules


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("What is the price of the pro plan?", Completeness.COMPLETE),
        ("I already paid that invoice online.", Completeness.COMPLETE),
        ("yes", Completeness.COMPLETE),
        ("no thanks", Completeness.COMPLETE),
        ("my account number is", Completeness.INCOMPLETE),
        ("so the problem is", Completeness.INCOMPLETE),
        ("I think", Completeness.INCOMPLETE),
        ("well", Completeness.INCOMPLETE),
        ("I was wondering", Completeness.INCOMPLETE),
        ("it's", Completeness.INCOMPLETE),
        ("um", Completeness.INCOMPLETE),
        ("I need help with the,", Completeness.INCOMPLETE),
        ("it's two thousand", Completeness.UNSURE),
        ("five five five", Completeness.INCOMPLETE),
        ("555 123", Completeness.INCOMPLETE),
        ("555 123 4567", Completeness.LIKELY),
        ("my zip is nine four one", Completeness.INCOMPLETE),
        ("my zip is 94107", Completeness.COMPLETE),
        ("my account number is four five six seven", Completeness.UNSURE),
        ("my account number is four five", Completeness.INCOMPLETE),
        ("the card number is 4111 1111 1111", Completeness.INCOMPLETE),
        ("my name is John", Completeness.UNSURE),
        ("my name is John Smith", Completeness.LIKELY),
        ("it keeps crashing when I log in", Completeness.LIKELY),
        ("I live in", Completeness.INCOMPLETE),
        ("I think so", Completeness.LIKELY),
        ("I'd like to book", Completeness.UNSURE),
        ("", Completeness.INCOMPLETE),
    ],
)
def test_completeness_rules(text: str, verdict: Completeness) -> None:
    assert assess_completeness(text).verdict is verdict


# ------------------------------------------------------------------------ end of turn


def test_complete_sentence_ends_fast() -> None:
    call = Call()
    call.voice(1500)
    call.say("", " What is the price of the pro plan?", at_ms=1620, audio_end_ms=1500)
    call.quiet(1500)
    assert [type(e) for e in call.events] == [UserStarted, UserPaused, EndOfTurn]
    end = call.of(EndOfTurn)[0]
    assert isinstance(end, EndOfTurn)
    assert end.text == "What is the price of the pro plan?"
    assert end.t_ms - 1500 <= 250


def test_unfinished_clause_waits_through_a_pause() -> None:
    call = Call()
    call.voice(1200)
    call.say("", " My account number is", at_ms=1320, audio_end_ms=1200)
    call.quiet(900)  # a long hesitation
    assert not call.of(EndOfTurn)
    call.voice(1500)
    call.say(" My account number is", " four five six seven eight nine", at_ms=2700 + 120, audio_end_ms=3600)
    call.quiet(1500)
    ends = call.of(EndOfTurn)
    assert len(ends) == 1
    assert isinstance(ends[0], EndOfTurn)
    assert ends[0].text == "My account number is four five six seven eight nine"


def test_digit_groups_do_not_end_the_turn_until_the_number_is_whole() -> None:
    call = Call()
    t = 0
    groups = ["five five five", "one two three", "four five six seven"]
    text = ""
    for i, group in enumerate(groups):
        call.voice(900)
        t = call.t
        text = (text + " " + group).strip()
        call.say("", text, at_ms=t + 120, audio_end_ms=t)
        if i < len(groups) - 1:
            call.quiet(450)
            assert not call.of(EndOfTurn), group
    call.quiet(1000)
    end = call.of(EndOfTurn)[0]
    assert isinstance(end, EndOfTurn)
    assert end.t_ms - t <= 450


def test_soniox_end_commits_at_once() -> None:
    call = Call()
    call.voice(800)
    call.say("", " I need a refund", at_ms=900, audio_end_ms=800)
    call.run(900, QUIET)
    call.det.on_endpoint("end", 900)
    call.events += call.det.events_received()
    end = call.of(EndOfTurn)[0]
    assert isinstance(end, EndOfTurn)
    assert (end.t_ms, end.reason) == (900, "endpoint")


def test_soniox_end_while_the_caller_talks_waits_for_their_pause() -> None:
    """'I'd like to dispute a charge' [breath] 'from last week': <end> lands on the second part."""
    call = Call()
    call.voice(1200)
    call.say(" I'd like to dispute a charge", "", at_ms=1300, audio_end_ms=1200)
    call.quiet(200)  # the breath Soniox took for an endpoint
    call.voice(300)  # ... and the caller goes on
    call.det.on_endpoint("end", call.t)
    call.events += call.det.events_received()
    assert not call.of(EndOfTurn)  # stale: the caller is talking now
    call.say(" from last week.", "", at_ms=call.t + 600, audio_end_ms=call.t + 500)
    call.voice(500)
    resumed_end = call.t
    call.quiet(1000)
    (end,) = call.of(EndOfTurn)
    assert isinstance(end, EndOfTurn)
    assert end.text.endswith("from last week.")
    assert resumed_end < end.t_ms <= resumed_end + 450


def test_soniox_end_stands_when_the_voice_brings_no_words() -> None:
    """A room the VAD takes for voice must not hold a finished turn open for ever."""
    call = Call()
    call.voice(800)
    call.say(" I need a refund.", "", at_ms=900, audio_end_ms=800)
    call.voice(200)
    t_end = call.t
    call.det.on_endpoint("end", t_end)
    call.events += call.det.events_received()
    assert not call.of(EndOfTurn)
    call.voice(2000)  # "voice" on and on, no new word
    (end,) = call.of(EndOfTurn)
    assert isinstance(end, EndOfTurn)
    assert end.reason == "endpoint"
    assert end.t_ms == t_end + TurnConfig().endpoint_voice_grace_ms


def test_voice_without_words_after_a_finished_answer_ends_the_turn() -> None:
    """'okay' in a busy room: the VAD hears the room go on, the STT hears no word in it."""
    call = Call()
    call.voice(400)
    call.say(" okay", "", at_ms=500, audio_end_ms=400)
    call.voice(1600)
    (end,) = call.of(EndOfTurn)
    assert isinstance(end, EndOfTurn)
    assert end.reason == "wordless_voice"
    assert end.t_ms == 500 + TurnConfig().wordless_voice_ms


def test_voice_with_words_coming_or_unfinished_words_keeps_the_turn() -> None:
    unfinished = Call()
    unfinished.voice(400)
    unfinished.say(" my account number is", "", at_ms=500, audio_end_ms=400)
    unfinished.voice(2000)
    assert not unfinished.of(EndOfTurn)
    talking = Call()
    talking.voice(400)
    talking.say(" okay", "", at_ms=500, audio_end_ms=400)
    talking.say("", " and then", at_ms=1200, audio_end_ms=1100)
    talking.voice(1500)
    assert not talking.of(EndOfTurn)  # non-final words: the caller is still talking


@pytest.mark.parametrize("always", [False, True])
def test_soniox_end_after_an_unfinished_clause(always: bool) -> None:
    call = Call(TurnConfig(endpoint_always_commits=always))
    call.voice(800)
    call.say(" so the problem is", "", at_ms=900, audio_end_ms=800)
    call.run(900, QUIET)
    call.det.on_endpoint("end", 900)
    call.events += call.det.events_received()
    assert bool(call.of(EndOfTurn)) is always


def _account_number_then(endpoint: bool, resume_after_ms: int | None = None) -> Call:
    """'my account number is 456789' (UNSURE: variable length), <end> 300 ms into the silence."""
    call = Call()
    call.voice(1000)
    call.say(" my account number is four five six seven eight nine", "", at_ms=1060, audio_end_ms=1000)
    call.quiet(300)
    if endpoint:
        call.det.on_endpoint("end", call.t)
        call.events += call.det.events_received()
    if resume_after_ms is not None:
        call.quiet(resume_after_ms - 300)
        call.say(" one two three", "", at_ms=call.t + 460, audio_end_ms=call.t + 400)
        call.voice(400)
    call.quiet(1500)
    return call


def test_soniox_end_shortens_an_unsure_hold() -> None:
    unsure = TurnConfig().hold_ms[Completeness.UNSURE]
    alone = _account_number_then(endpoint=False).of(EndOfTurn)[0]
    agreed = _account_number_then(endpoint=True).of(EndOfTurn)[0]
    assert alone.t_ms - 1000 >= unsure  # our rules alone wait the whole UNSURE hold
    assert agreed.t_ms - 1000 == TurnConfig().endpoint_unsure_hold_ms < unsure
    assert agreed.reason == "silence" and agreed.verdict is Completeness.UNSURE


def test_speech_after_soniox_end_restores_the_unsure_hold() -> None:
    # the caller reads the next digit group 450 ms into the pause: <end> no longer counts
    call = _account_number_then(endpoint=True, resume_after_ms=450)
    ends = call.of(EndOfTurn)
    assert len(ends) == 1 and ends[0].text.endswith("nine one two three")
    # six + three digits of a variable-length number: UNSURE again, the full hold applies
    assert ends[0].t_ms - (1000 + 460 + 400) >= TurnConfig().hold_ms[Completeness.UNSURE]


def test_text_is_current_only_once_the_stt_has_the_last_speech() -> None:
    call = Call()
    call.say("", " I need", at_ms=500, audio_end_ms=400)
    call.voice(900)  # the caller goes on talking past "I need"
    assert call.det.turn_text == "I need" and not call.det.text_is_current
    call.say("", " I need a refund", at_ms=960, audio_end_ms=900)
    call.quiet(60)
    assert call.det.text_is_current  # the newest word ends with the last voice frame
    call.voice(40)
    # the VAD trails the last word by 100 ms (line noise): still current for a speculation
    assert call.det.text_is_current
    call.voice(260)
    assert not call.det.text_is_current  # 300 ms more speech and no words for it yet
    call.quiet(40)
    call.det.on_endpoint("fin", call.t)  # Soniox finalized everything it heard
    assert call.det.text_is_current


def test_words_landing_in_a_pause_move_its_pause_point() -> None:
    cfg = TurnConfig(speculate_min_ms=40, speculate_lead_ms=660)  # the agent runner's settings
    call = Call(cfg)
    call.say("", " I'm calling", at_ms=560, audio_end_ms=500)
    call.voice(1000)
    call.quiet(60)  # UNSURE text: pause point 700 - 660 = 40 ms
    first = call.of(UserPaused)
    assert len(first) == 1 and first[0].text == "I'm calling" and call.det.speculation_due
    # the STT catches up: the words now end on a stranded "I" (INCOMPLETE, hold 1200)
    call.say("", " I'm calling about the bill I", at_ms=call.t + 20, audio_end_ms=1000)
    call.quiet(20)
    assert not call.det.speculation_due  # 1200 - 660 = 540 ms of silence for these words
    assert len(call.of(UserPaused)) == 1
    call.quiet(600)
    again = call.of(UserPaused)
    assert len(again) == 2 and again[1].text == "I'm calling about the bill I"
    assert again[1].silence_ms >= 540 and not call.of(EndOfTurn)


def test_user_resumes_after_a_tentative_pause() -> None:
    call = Call()
    call.voice(700)
    call.say("", " I need to change my address", at_ms=800, audio_end_ms=700)
    call.quiet(160)
    assert call.of(UserPaused) and not call.of(EndOfTurn)
    call.voice(600)
    assert call.of(UserResumed)
    resumed = call.of(UserResumed)[0]
    assert resumed.t_ms == 700 + 160 + FRAME_MS


def test_fin_confirms_stale_text() -> None:
    # No word timings: text that arrived before the speech ended is not trusted as current,
    # until <fin> says Soniox has finalized everything it heard.
    call = Call()
    call.say("", " yes", at_ms=300)
    call.voice(600)
    call.quiet(200)
    assert not call.of(EndOfTurn)
    call.det.on_endpoint("fin", call.t)
    call.quiet(FRAME_MS)
    assert call.of(EndOfTurn)


def test_stale_text_asks_for_finalize_at_its_own_pause_point() -> None:
    # "nah" ended 200 ms before the VAD's last voice frame (a noise blip in the tail): the words
    # may not be current, so the turn cannot end before <fin>. UserPaused (which sends
    # finalize) still comes at the pause point of COMPLETE words, not of the stale wait, and a
    # <fin> answered 40 ms later ends the turn at the COMPLETE hold.
    cfg = TurnConfig()
    call = Call(cfg)
    call.voice(600)
    call.say("", " nah", at_ms=620, audio_end_ms=400)
    call.quiet(cfg.speculate_min_ms)
    paused = call.of(UserPaused)
    assert paused and paused[0].silence_ms == cfg.speculate_min_ms
    assert not call.of(EndOfTurn)
    call.quiet(300)
    assert not call.of(EndOfTurn)  # stale: with no <fin> the hold is the stale wait
    assert cfg.stale_text_wait_ms > 420

    call = Call(cfg)
    call.voice(600)
    call.say("", " nah", at_ms=620, audio_end_ms=400)
    call.quiet(cfg.speculate_min_ms + 40)
    call.det.on_endpoint("fin", call.t)  # the answer to the finalize sent at UserPaused
    call.quiet(cfg.hold_ms[Completeness.COMPLETE] - cfg.speculate_min_ms - 40)
    end = call.of(EndOfTurn)
    assert end and end[0].silence_ms == cfg.hold_ms[Completeness.COMPLETE]


def test_finalize_is_asked_once_per_pause_and_not_in_the_first_gap_between_words() -> None:
    # The agent speculates 40 ms into a pause; Soniox allows a finalize every few seconds, so
    # the detector asks for it only at finalize_min_ms (a second UserPaused, same words) and
    # once per pause: a 60 ms gap between words spends nothing.
    cfg = TurnConfig(speculate_min_ms=40, speculate_lead_ms=660, finalize_min_ms=120)
    call = Call(cfg)
    call.say("", " I would like to book", at_ms=300, audio_end_ms=280)
    call.voice(300)
    call.quiet(60)
    call.voice(200)  # a gap between words: speculated on, not finalized
    call.say("", " I would like to book an appointment", at_ms=560, audio_end_ms=560)
    call.quiet(400)
    paused = call.of(UserPaused)
    assert [(p.silence_ms, p.finalize) for p in paused] == [(40, False), (40, False), (120, True)]
    assert paused[1].text == paused[2].text == "I would like to book an appointment"


# ------------------------------------------------------------- noise and short answers


def test_cough_without_words_is_not_a_turn() -> None:
    call = Call()
    call.voice(200)
    call.quiet(1500)
    assert [type(e) for e in call.events] == [UserStarted, FalseStart]


def test_long_speech_without_words_still_ends_the_turn() -> None:
    call = Call()
    call.voice(1500)
    call.quiet(1500)
    end = call.of(EndOfTurn)[0]
    assert isinstance(end, EndOfTurn)
    assert end.reason == "no_text"


@settings(max_examples=60, deadline=None)
@given(
    word=st.sampled_from(["yes", "no", "okay", "yeah", "sure", "correct", "nope", "hello"]),
    voice_ms=st.integers(0, 25).map(lambda n: n * FRAME_MS),
    lag_ms=st.integers(40, 1200),
)
def test_short_answer_is_never_missed(word: str, voice_ms: int, lag_ms: int) -> None:
    # whatever the VAD heard (even nothing) and however late the STT is, the answer ends a turn
    call = Call()
    call.quiet(400)
    call.voice(voice_ms)
    call.say("", f" {word}", at_ms=call.t + lag_ms, audio_end_ms=call.t)
    call.quiet(3000)
    ends = call.of(EndOfTurn)
    assert len(ends) == 1
    assert isinstance(ends[0], EndOfTurn)
    assert ends[0].text == word


def test_late_finals_of_a_committed_turn_do_not_open_a_new_turn() -> None:
    call = Call()
    call.voice(500)
    call.say("", " no thanks", at_ms=600, audio_end_ms=500)
    call.quiet(400)
    assert len(call.of(EndOfTurn)) == 1
    call.say(" no thanks", "", at_ms=call.t + 100, audio_end_ms=500)
    call.quiet(2000)
    assert len(call.of(EndOfTurn)) == 1
    assert len(call.of(UserStarted)) == 1


# ---------------------------------------------------------------- agent speaking


def test_backchannel_while_agent_speaks_is_not_barge_in() -> None:
    call = Call()
    call.det.set_agent_speaking(True, 0)
    call.quiet(500)
    call.voice(400)
    call.say("", " uh huh", at_ms=call.t + 120, audio_end_ms=call.t)
    call.quiet(800)
    # The agent is paused at the onset (OverlapStarted) and resumed by the Backchannel verdict.
    assert [type(e) for e in call.events] == [OverlapStarted, Backchannel]
    assert call.det.state is TurnState.AGENT_SPEAKING


def test_wordless_noise_while_agent_speaks_is_discarded() -> None:
    call = Call()
    call.det.set_agent_speaking(True, 0)
    call.quiet(500)
    call.voice(100)  # a cough: short, no words
    call.quiet(1000)
    assert [type(e) for e in call.events] == [OverlapStarted, OverlapDiscarded]
    assert call.det.state is TurnState.AGENT_SPEAKING


def test_real_speech_while_agent_speaks_is_barge_in() -> None:
    call = Call()
    call.det.set_agent_speaking(True, 0)
    call.quiet(500)
    call.say("", " wait I", at_ms=call.t + 400, audio_end_ms=call.t + 250)
    call.voice(600)
    barge = call.of(BargeIn)
    assert barge and not call.of(Backchannel)
    assert isinstance(barge[0], BargeIn)
    assert barge[0].t_ms <= 500 + 400 + FRAME_MS
    assert call.det.state in (TurnState.USER_SPEAKING, TurnState.USER_PAUSING)
    call.det.set_agent_speaking(False, call.t)
    call.say(" wait I", " have a question?", at_ms=call.t + 300, audio_end_ms=call.t + 200)
    call.voice(200)
    call.quiet(600)
    end = call.of(EndOfTurn)[0]
    assert isinstance(end, EndOfTurn)
    assert end.text == "wait I have a question?"


def test_long_wordless_speech_over_the_agent_is_barge_in() -> None:
    call = Call()
    call.det.set_agent_speaking(True, 0)
    call.voice(1000)
    barge = call.of(BargeIn)
    assert barge
    assert barge[0].t_ms == TurnConfig().barge_in_voiced_ms


def test_agent_taking_the_floor_closes_an_open_turn() -> None:
    call = Call()
    call.voice(600)
    call.say("", " my account number is", at_ms=700, audio_end_ms=600)
    call.quiet(300)
    call.det.set_agent_speaking(True, call.t)
    call.events += call.det.events_received()
    end = call.of(EndOfTurn)[0]
    assert isinstance(end, EndOfTurn)
    assert end.reason == "agent"
    assert call.det.state is TurnState.AGENT_SPEAKING


# ----------------------------------------------------------------- transition table


def test_transition_table_is_closed_and_reachable() -> None:
    assert set(TRANSITIONS) == set(TurnState)
    for state, row in TRANSITIONS.items():
        assert row, state
        assert all(isinstance(t, Trigger) and isinstance(s, TurnState) for t, s in row.items())
    reachable = {TurnState.LISTENING}
    frontier = [TurnState.LISTENING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()].values():
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(TurnState)


def render_mermaid() -> str:
    """The state diagram, generated from the table (what the docs embed)."""
    lines = ["stateDiagram-v2"]
    for state, row in TRANSITIONS.items():
        lines += [f"    {state.name} --> {target.name}: {trigger.value}" for trigger, target in row.items()]
    return "\n".join(lines)


def test_diagram_is_rendered_from_the_table() -> None:
    diagram = render_mermaid()
    assert diagram.count("-->") == sum(len(row) for row in TRANSITIONS.values())
    for state in TurnState:
        assert f"    {state.name} -->" in diagram


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # (driver steps, final state); each step: ("voice"|"quiet", ms) or ("agent", bool) or ("say", text)
        ([("voice", 200)], TurnState.USER_SPEAKING),
        ([("voice", 200), ("quiet", 40)], TurnState.USER_PAUSING),
        ([("say", "I need my invoice"), ("voice", 300), ("quiet", 160)], TurnState.USER_PAUSED),
        ([("say", "yes"), ("voice", 300), ("quiet", 600)], TurnState.LISTENING),
        ([("agent", True)], TurnState.AGENT_SPEAKING),
        ([("agent", True), ("voice", 100)], TurnState.OVERLAP),
        ([("agent", True), ("voice", 100), ("quiet", 1000)], TurnState.AGENT_SPEAKING),
        ([("agent", True), ("voice", 100), ("agent", False)], TurnState.USER_SPEAKING),
        ([("voice", 100), ("agent", True)], TurnState.OVERLAP),
        ([("agent", True), ("agent", False)], TurnState.LISTENING),
    ],
)
def test_transitions(script: list[tuple[str, object]], expected: TurnState) -> None:
    call = Call()
    for step, arg in script:
        if step == "voice":
            assert isinstance(arg, int)
            call.voice(arg)
        elif step == "quiet":
            assert isinstance(arg, int)
            call.quiet(arg)
        elif step == "agent":
            call.det.set_agent_speaking(bool(arg), call.t)
        else:
            call.say("", f" {arg}", at_ms=call.t, audio_end_ms=call.t + 300)
    assert call.det.state is expected
