"""CallSupervisor: dead air and voicemail decisions over scripted calls (corpus speech, synthetic beeps)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from mediasrv.agent.config import AgentConfig, DeadAirConfig, VoicemailConfig
from mediasrv.agent.supervisor import (
    Action,
    CallSupervisor,
    HangUp,
    LeaveMessage,
    SayAndHangUp,
    SayCheckIn,
)
from mediasrv.codec import ulaw_encode
from mediasrv.corpus import Utterance, load_labels, read_wav_ulaw
from mediasrv.errors import CodecError
from mediasrv.vad import VoiceActivityDetector

CORPUS = Path("/work/shared/corpus/dev")
needs_corpus = pytest.mark.skipif(not (CORPUS / "labels.json").exists(), reason="dev corpus not available")
FRAME = 160
SILENCE = b"\xff" * FRAME  # mu-law digital silence
GREETING = "Hi, you've reached Dana. I can't take your call right now, please leave a message after the tone."
MESSAGE = "Hi Dana, this is Acme calling about your order. Please call us back. Thanks!"


def _agent(
    action: Literal["hangup", "leave_message"] = "hangup",
    message: str = MESSAGE,
    detect: bool = True,
    after_s: float = 10.0,
) -> AgentConfig:
    return AgentConfig(
        name="t",
        dead_air=DeadAirConfig(
            after_s=after_s, check_in="Are you still there?", max_check_ins=2, goodbye="Bye!"
        ),
        voicemail=VoicemailConfig(detect=detect, window_s=30.0, action=action, message=message),
    )


def _utterance(file: str) -> Utterance:
    (utt,) = [u for u in load_labels(CORPUS).utterances if u.file == file]
    return utt


def _speech(file: str, trim: bool = False) -> bytes:
    """A corpus file as mu-law; ``trim`` keeps just the labelled speech (+-100 ms)."""
    ulaw = read_wav_ulaw(CORPUS / file)
    if trim:
        utt = _utterance(file)
        ulaw = ulaw[max(0, (utt.speech_start_ms - 100) * 8) : (utt.speech_end_ms + 100) * 8]
    return ulaw[: len(ulaw) // FRAME * FRAME]


def _tone(freq_hz: float, ms: int, amplitude: float = 6000.0) -> bytes:
    n = np.arange(ms * 8)
    pcm = (amplitude * np.sin(2 * np.pi * freq_hz * n / 8000)).astype("<i2")
    return ulaw_encode(pcm.tobytes())


class Call:
    """A scripted call: feeds frames in audio time through a real VAD and records the actions."""

    def __init__(self, config: AgentConfig, speak_check_ins_ms: int = 0) -> None:
        self.sup = CallSupervisor(config)
        self.vad = VoiceActivityDetector()
        self.t_ms = 0
        self.last_voice_ms: int | None = None
        self.voiced_frames = 0
        self.log: list[Action] = []
        self.speak_check_ins_ms = speak_check_ins_ms  # > 0: play each check-in like a runner would
        self._agent_until: int | None = None

    def play(self, ulaw: bytes) -> None:
        for i in range(0, len(ulaw) - FRAME + 1, FRAME):
            frame = ulaw[i : i + FRAME]
            self.t_ms += 20
            active = self.vad.process_ulaw(frame).active
            if active:
                self.last_voice_ms = self.t_ms
                self.voiced_frames += 1
            self.sup.on_frame(frame, active, self.t_ms)
            if self._agent_until is not None and self.t_ms >= self._agent_until:
                self._agent_until = None
                self.sup.on_agent_speaking(False, self.t_ms)
            new = self.sup.actions()
            self.log += new
            for action in new:
                if isinstance(action, SayCheckIn) and self.speak_check_ins_ms:
                    self.sup.on_agent_speaking(True, self.t_ms)
                    self._agent_until = self.t_ms + self.speak_check_ins_ms

    def quiet(self, ms: int) -> None:
        self.play(SILENCE * (ms // 20))

    def agent_says(self, ms: int) -> None:
        """The agent talks for ``ms`` while the caller is silent."""
        self.sup.on_agent_speaking(True, self.t_ms)
        self.quiet(ms)
        self.sup.on_agent_speaking(False, self.t_ms)

    def text(self, final_text: str) -> None:
        self.sup.on_caller_text(final_text, self.t_ms)
        self.log += self.sup.actions()


# ------------------------------------------------------------------------------ dead air


@needs_corpus
def test_check_ins_then_goodbye_and_hang_up_when_nobody_answers() -> None:
    call = Call(_agent(), speak_check_ins_ms=1500)
    call.play(_speech("dev020.wav"))  # "hello", then 1.5 s of line noise
    assert call.voiced_frames > 0 and call.last_voice_ms is not None
    spoke = call.last_voice_ms
    call.quiet(60_000)
    first = spoke + 10_000
    second = first + 1500 + 10_000  # the check-in's own playback pauses the timer
    assert call.log == [
        SayCheckIn(text="Are you still there?", n=1, at_ms=first),
        SayCheckIn(text="Are you still there?", n=2, at_ms=second),
        SayAndHangUp(text="Bye!", reason="dead_air", at_ms=second + 1500 + 10_000),
    ]
    assert call.sup.finished and call.sup.verdict is None


@needs_corpus
def test_caller_answering_a_check_in_resets_the_count() -> None:
    call = Call(_agent(), speak_check_ins_ms=1500)
    call.play(_speech("dev020.wav"))
    call.quiet(11_500)  # check-in 1 played
    assert [type(a) for a in call.log] == [SayCheckIn]
    call.play(_speech("dev022.wav"))  # "yes"
    call.text("yes")
    call.sup.on_turn_committed(call.t_ms)
    call.sup.on_reply_started(call.t_ms)
    call.quiet(600)  # reply latency: owed, not dead air
    call.agent_says(2000)
    agent_done = call.t_ms
    call.quiet(10_500)
    assert call.log[1:] == [SayCheckIn(text="Are you still there?", n=1, at_ms=agent_done + 10_000)]


def test_agent_speaking_pauses_the_timer() -> None:
    call = Call(_agent())
    call.quiet(2000)
    call.agent_says(25_000)  # a long answer: 25 s without caller speech is not dead air
    assert call.log == []
    done = call.t_ms
    call.quiet(10_000)
    assert call.log == [SayCheckIn(text="Are you still there?", n=1, at_ms=done + 10_000)]


def test_owed_reply_pauses_the_timer_but_a_lost_reply_does_not_disable_it() -> None:
    call = Call(_agent())
    call.quiet(1000)
    call.sup.on_turn_committed(call.t_ms)
    call.quiet(200)
    call.sup.on_reply_started(call.t_ms)
    started = call.t_ms
    call.quiet(9_000)
    assert call.log == []
    call.quiet(2_000)  # the reply never plays: quiet since it was owed
    assert call.log == [SayCheckIn(text="Are you still there?", n=1, at_ms=started + 10_000)]


def test_zero_check_ins_says_goodbye_at_the_first_deadline() -> None:
    config = _agent()
    config.dead_air.max_check_ins = 0
    call = Call(config)
    call.quiet(10_100)
    assert call.log == [SayAndHangUp(text="Bye!", reason="dead_air", at_ms=10_020)]


# ------------------------------------------------------------------------------ voicemail


def _machine_greeting(call: Call, agent_greets: bool) -> int:
    """Real speech (a corpus clip) with a voicemail transcript; returns when the text landed."""
    if agent_greets:  # the agent's own greeting plays over the machine's (first_speaker = agent)
        call.sup.on_agent_speaking(True, call.t_ms)
    call.play(_speech("dev024.wav", trim=True) + _speech("dev045.wav", trim=True))
    if agent_greets:
        call.sup.on_agent_speaking(False, call.t_ms)
    call.quiet(200)
    call.text(GREETING)
    return call.t_ms


@needs_corpus
def test_greeting_and_beep_leave_the_message_after_the_beep() -> None:
    call = Call(_agent("leave_message"))
    assert not call.sup.hold_replies
    _machine_greeting(call, agent_greets=True)
    assert call.sup.verdict == "voicemail" and call.sup.hold_replies
    call.quiet(600)
    call.play(_tone(1000, 400))
    beep_end = call.t_ms
    assert call.log == []  # still holding while the tone plays
    call.quiet(1000)
    assert len(call.log) == 1
    (action,) = call.log
    assert isinstance(action, LeaveMessage) and action.text == MESSAGE
    assert beep_end <= action.at_ms <= beep_end + 60
    assert call.sup.finished
    call.quiet(30_000)  # finished: no check-ins on the quiet recording
    assert call.log == [action]


@needs_corpus
def test_greeting_and_beep_with_hangup_config_hang_up_at_the_verdict() -> None:
    call = Call(_agent("hangup"))
    at = _machine_greeting(call, agent_greets=False)
    call.quiet(600)
    call.play(_tone(1000, 400))
    call.quiet(1000)
    assert call.log == [HangUp(reason="voicemail", at_ms=at)]
    assert call.sup.verdict == "voicemail" and call.sup.finished


def test_beep_alone_is_voicemail() -> None:
    call = Call(_agent("leave_message"))
    call.quiet(1500)
    call.play(_tone(1000, 400))
    assert call.sup.verdict == "voicemail" and call.sup.hold_replies and call.log == []
    call.quiet(200)
    (action,) = call.log
    assert isinstance(action, LeaveMessage) and 1900 <= action.at_ms <= 1960


@needs_corpus
def test_no_beep_leaves_the_message_once_the_greeting_stopped() -> None:
    call = Call(_agent("leave_message"))
    at = _machine_greeting(call, agent_greets=False)
    assert call.last_voice_ms is not None
    call.quiet(8000)
    expected = max(at + 3000, call.last_voice_ms + 2000)
    assert call.log == [LeaveMessage(text=MESSAGE, at_ms=expected)]


@pytest.mark.parametrize("message", ["", "   "])
def test_leave_message_without_a_message_hangs_up(message: str) -> None:
    call = Call(_agent("leave_message", message=message))
    call.quiet(500)
    call.text("please leave a message after the tone")
    assert call.log == [HangUp(reason="voicemail", at_ms=500)]


@needs_corpus
def test_hello_then_a_turn_is_human_and_no_voicemail_action() -> None:
    call = Call(_agent("leave_message"))
    call.play(_speech("dev020.wav", trim=True))  # "hello?"
    call.text("hello?")
    call.quiet(300)
    call.sup.on_turn_committed(call.t_ms)
    call.sup.on_reply_started(call.t_ms)
    call.quiet(400)
    call.agent_says(2500)  # "Hi! This is Acme, ..."
    assert call.sup.verdict is None
    call.play(_speech("dev002.wav"))  # "I'm calling about the bill I received last week."
    call.text(_utterance("dev002.wav").text)
    assert call.sup.verdict == "human"
    call.text("sorry, I'm not available on Monday")  # first verdict wins
    call.play(_tone(1000, 400))
    call.quiet(1000)
    assert call.sup.verdict == "human" and not call.sup.hold_replies
    assert call.log == []


@needs_corpus
def test_long_monologue_at_call_start_is_voicemail() -> None:
    clips = b"".join(
        _speech(u.file, trim=True) + SILENCE * 10
        for u in load_labels(CORPUS).utterances
        if u.kind == "statement"
    )
    call = Call(_agent("hangup"))
    call.quiet(400)
    call.play(clips[: 16_000 * 8])  # 16 s of speech with 0.4 s breaths, no transcript
    assert call.sup.verdict == "voicemail"
    (action,) = call.log
    assert isinstance(action, HangUp) and action.reason == "voicemail"
    assert 12_400 <= action.at_ms <= 14_500


def test_nothing_is_decided_after_the_window() -> None:
    call = Call(_agent("hangup", after_s=120.0))
    call.quiet(31_000)
    call.text(GREETING)
    call.quiet(500)
    call.play(_tone(1000, 400))
    call.quiet(1000)
    assert call.sup.verdict is None and not call.sup.hold_replies and call.log == []


@needs_corpus
def test_detection_off_ignores_greeting_and_beep() -> None:
    call = Call(_agent("hangup", detect=False))
    _machine_greeting(call, agent_greets=False)
    call.play(_tone(1000, 400))
    call.quiet(1000)
    assert call.sup.verdict is None and call.log == []


def test_bad_frame_is_refused() -> None:
    with pytest.raises(CodecError):
        CallSupervisor(_agent()).on_frame(b"\xff" * 100, False, 20)


@needs_corpus
def test_no_false_voicemail_on_corpus_speech() -> None:
    """Every dev utterance as a caller's first words: never a beep, a monologue or a phrase."""
    utterances = load_labels(CORPUS).utterances
    assert len(utterances) >= 60
    for utt in utterances:
        call = Call(_agent("leave_message"))
        call.play(_speech(utt.file))
        call.text(utt.text)
        assert call.voiced_frames > 0, utt.file
        assert call.sup.verdict is None and not call.sup.hold_replies, utt.file
        assert call.log == [], utt.file
