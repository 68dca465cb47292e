"""DeadAirMonitor and VoicemailDetector: scripted inputs, synthetic beeps, corpus speech."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from mediasrv.codec import array_to_ulaw
from mediasrv.corpus import dev_corpus
from mediasrv.errors import CodecError
from mediasrv.turns import (
    Beep,
    CheckIn,
    DeadAirMonitor,
    HangUp,
    Human,
    Voicemail,
    VoicemailDetector,
    VoicemailDetectorConfig,
)
from mediasrv.vad import VoiceActivityDetector

CORPUS = dev_corpus()
needs_corpus = pytest.mark.skipif(not (CORPUS / "labels.json").exists(), reason="dev corpus not available")

# ------------------------------------------------------------------------------ dead air


def _poll_until(mon: DeadAirMonitor, start: float, stop: float, step: float = 0.5) -> list[object]:
    out: list[object] = []
    t = start
    while t <= stop + 1e-9:
        out += [(round(t, 3), a) for a in mon.poll(t)]
        t += step
    return out


def test_check_ins_then_hang_up_when_nobody_answers() -> None:
    mon = DeadAirMonitor(after_s=10, max_check_ins=2)
    mon.on_activity(0.0, "caller")
    assert mon.next_deadline() == 10.0
    got = _poll_until(mon, 0.0, 40.0)
    assert got == [
        (10.0, CheckIn(n=1, at_s=10.0)),
        (20.0, CheckIn(n=2, at_s=20.0)),
        (30.0, HangUp(at_s=30.0)),
    ]
    assert mon.finished and mon.next_deadline() is None
    assert mon.poll(100.0) == []


def test_agent_check_in_speech_restarts_the_timer_but_does_not_answer() -> None:
    mon = DeadAirMonitor(after_s=10, max_check_ins=1)
    mon.on_activity(0.0)
    assert mon.poll(10.0) == [CheckIn(n=1, at_s=10.0)]
    mon.set_busy(True, 10.0)  # the agent says "Are you still there?"
    assert mon.poll(15.0) == [] and mon.next_deadline() is None
    mon.set_busy(False, 12.5)
    assert mon.next_deadline() == 22.5
    assert mon.unanswered == 1
    assert mon.poll(22.5) == [HangUp(at_s=22.5)]


def test_caller_answer_resets_the_check_in_count() -> None:
    mon = DeadAirMonitor(after_s=5, max_check_ins=1)
    mon.on_activity(0.0)
    assert mon.poll(5.0) == [CheckIn(n=1, at_s=5.0)]
    mon.on_activity(6.0, "caller")  # "yes, I'm here"
    assert mon.unanswered == 0
    assert mon.poll(10.9) == []
    assert mon.poll(11.0) == [CheckIn(n=1, at_s=11.0)]


def test_activity_keeps_the_line_alive_and_timer_starts_at_first_input() -> None:
    mon = DeadAirMonitor(after_s=10, max_check_ins=2)
    assert mon.next_deadline() is None
    assert mon.poll(3.0) == []  # the timer starts here
    for t in range(4, 60, 4):
        mon.on_activity(float(t), "agent" if t % 8 else "caller")
        assert mon.poll(float(t) + 0.5) == []
    assert mon.next_deadline() == 66.0


def test_zero_check_ins_hangs_up_at_the_first_deadline() -> None:
    mon = DeadAirMonitor(after_s=8, max_check_ins=0)
    mon.on_activity(1.0)
    assert mon.poll(9.0) == [HangUp(reason="dead_air", at_s=9.0)]


# ------------------------------------------------------------------------------ voicemail

FRAME_S = 0.02


def _run_vad(det: VoicemailDetector, pattern: list[tuple[float, bool]], start: float = 0.0) -> float:
    """Feed VAD flags: pattern of (duration, active); returns the end time."""
    t = start
    for dur, active in pattern:
        for _ in range(round(dur / FRAME_S)):
            t = round(t + FRAME_S, 3)
            det.on_vad(active, t)
    return t


@pytest.mark.parametrize(
    "text",
    [
        "Hi, you've reached Dana. Please leave a message after the tone.",
        "The person you are calling is not available.",
        "Welcome to Acme. For English, press 1.",
        "Your call has been forwarded to an automated voice messaging system",
        "The mailbox is full",
        "Para español, oprima dos",
        "I can't take your call right now",
    ],
)
def test_voicemail_and_ivr_phrases(text: str) -> None:
    det = VoicemailDetector()
    det.on_text(text, 3.2)
    (event,) = det.events_received()
    assert isinstance(event, Voicemail) and event.reason == "pattern" and event.at_s == 3.2
    assert det.verdict == event


def test_phrase_split_across_finals_is_found() -> None:
    det = VoicemailDetector()
    det.on_text("Please leave", 2.0)
    assert det.verdict is None
    det.on_text(" a message", 2.4)
    assert isinstance(det.verdict, Voicemail)


@pytest.mark.parametrize(
    "text", ["Hello?", "Hi, this is Sam speaking.", "Yes, who is this?", "I pressed it already"]
)
def test_ordinary_answers_are_not_voicemail(text: str) -> None:
    det = VoicemailDetector()
    det.on_text(text, 1.0)
    assert det.verdict is None and det.events_received() == []


def test_phrases_after_the_window_are_ignored() -> None:
    det = VoicemailDetector(window_s=30)
    det.on_text("please leave a message", 31.0)
    assert det.verdict is None


def test_long_monologue_at_call_start_is_a_machine() -> None:
    det = VoicemailDetector()
    # 14 s of greeting with short breaths (0.3 s), the agent silent
    _run_vad(det, [(0.5, False)] + [(2.0, True), (0.3, False)] * 6 + [(1.0, True)])
    (event,) = det.events_received()
    assert isinstance(event, Voicemail) and event.reason == "monologue"
    assert 12.0 <= event.at_s <= 13.5


def test_short_greeting_then_reply_to_the_agent_is_human() -> None:
    det = VoicemailDetector()
    t = _run_vad(det, [(0.4, False), (0.8, True), (1.2, False)])  # "Hello?"
    det.set_agent_speaking(True, t)
    t = _run_vad(det, [(3.0, False)], t)  # the agent introduces itself
    det.set_agent_speaking(False, t)
    _run_vad(det, [(0.5, False), (1.0, True)], t)  # "Oh, hi."
    (event,) = det.events_received()
    assert isinstance(event, Human)
    assert det.verdict == event
    det.on_text("not available", 9.0)  # first verdict wins
    assert det.verdict == event and not det.listening_for_beep


def test_speech_continuing_over_the_agent_is_not_an_exchange() -> None:
    det = VoicemailDetector()
    t = _run_vad(det, [(0.3, False), (3.0, True)])
    det.set_agent_speaking(True, t)  # the agent starts while the greeting goes on
    t = _run_vad(det, [(2.0, True)], t)
    det.set_agent_speaking(False, t)
    _run_vad(det, [(8.0, True)], t)
    (event,) = det.events_received()
    assert isinstance(event, Voicemail) and event.reason == "monologue"


def _tone(freq_hz: float, seconds: float, amplitude: float = 6000.0, noise: float = 0.0) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    x = amplitude * np.sin(2 * np.pi * freq_hz * t)
    if noise:
        x = x + np.random.default_rng(3).normal(0.0, noise, len(x))
    return array_to_ulaw(np.clip(x, -32768, 32767).astype(np.int16))


def _feed_audio(det: VoicemailDetector, ulaw: bytes, start_s: float) -> float:
    t = start_s
    for i in range(0, len(ulaw) - 159, 160):
        t = round(t + FRAME_S, 3)
        det.on_audio(ulaw[i : i + 160], t)
    return t


@pytest.mark.parametrize("noise", [0.0, 400.0])
def test_one_khz_beep_is_detected_with_its_start_and_end(noise: float) -> None:
    det = VoicemailDetector()
    silence = bytes([0xFF]) * 160 * 50
    t = _feed_audio(det, silence, 0.0)  # 1 s quiet
    t = _feed_audio(det, _tone(1000, 0.5, noise=noise), t)
    _feed_audio(det, silence, t)
    events = det.events_received()
    assert [type(e) for e in events] == [Voicemail, Beep]
    verdict, beep = events
    assert isinstance(verdict, Voicemail) and verdict.reason == "beep"
    assert isinstance(beep, Beep)
    assert abs(beep.start_s - 1.0) <= 0.04 and abs(beep.end_s - 1.5) <= 0.04
    assert abs(beep.freq_hz - 1000) < 15
    assert det.beep_at == beep.start_s and not det.listening_for_beep


def test_beep_after_a_pattern_verdict_is_still_reported() -> None:
    det = VoicemailDetector()
    det.on_text("Please leave your message after the tone.", 4.0)
    _feed_audio(det, _tone(1400, 0.3), 5.0)
    _feed_audio(det, bytes([0xFF]) * 160 * 5, 5.3)
    events = det.events_received()
    assert [type(e) for e in events] == [Voicemail, Beep]
    assert det.verdict == events[0]  # the verdict stays the pattern one


def test_short_or_out_of_band_tones_are_not_beeps() -> None:
    for tone in (_tone(1000, 0.1), _tone(200, 0.5), _tone(3000, 0.5), _tone(1000, 0.5, amplitude=20.0)):
        det = VoicemailDetector()
        t = _feed_audio(det, tone, 0.0)
        _feed_audio(det, bytes([0xFF]) * 160 * 10, t)
        assert det.events_received() == [] and det.beep_at is None


def test_beep_detector_refuses_bad_frames() -> None:
    with pytest.raises(CodecError):
        VoicemailDetector().on_audio(b"\xff" * 100, 0.02)


@needs_corpus
def test_no_false_beeps_or_monologues_on_corpus_speech() -> None:
    """Every dev file (4 noise conditions, two synthetic voices): speech is never a beep."""
    labels = json.loads((CORPUS / "labels.json").read_text())["utterances"]
    for label in labels:
        with wave.open(str(CORPUS / label["file"])) as wav:
            ulaw = array_to_ulaw(np.frombuffer(wav.readframes(wav.getnframes()), np.int16))
        det = VoicemailDetector(config=VoicemailDetectorConfig())
        vad = VoiceActivityDetector()
        for i in range(0, len(ulaw) - 159, 160):
            t = (i // 160 + 1) * FRAME_S
            det.on_audio(ulaw[i : i + 160], t)
            det.on_vad(vad.process_ulaw(ulaw[i : i + 160]).active, t)
        det.on_text(label["text"], len(ulaw) / 8000)
        assert det.events_received() == [], label["file"]
        assert det.beep_at is None
