"""SonioxScript (the emulator's sans-I/O core): tokens timed to the audio it receives.

Follows docs/providers.md 3.6 "What a faithful Soniox emulator must do". No loop, no sockets:
audio goes in as bytes, ``ResultMessage``s come out.
"""

from __future__ import annotations

import math
import random
from array import array

import pytest

from mediasrv.codec import ulaw_encode
from mediasrv.lab.emulators.soniox_script import (
    ScriptSegment,
    ScriptUtterance,
    SonioxScript,
    SttScript,
    block_energy_db,
)
from mediasrv.profiles import PROFILES, Profile
from mediasrv.providers.soniox.messages import ResultMessage

FRAME = 160


def tone_ulaw(ms: int, amplitude: int, rng: random.Random, noise: int = 60) -> bytes:
    """A 300 Hz tone (the "speech") over low white noise, as mu-law."""
    n = ms * 8
    samples = array(
        "h",
        (
            max(
                -32768,
                min(
                    32767,
                    int(amplitude * math.sin(2 * math.pi * 300 * i / 8000)) + rng.randint(-noise, noise),
                ),
            )
            for i in range(n)
        ),
    )
    return ulaw_encode(samples.tobytes())


def utterance_audio(
    rng: random.Random, lead_ms: int = 500, speech_ms: int = 1200, tail_ms: int = 1600
) -> bytes:
    return tone_ulaw(lead_ms, 0, rng) + tone_ulaw(speech_ms, 8000, rng) + tone_ulaw(tail_ms, 0, rng)


UTT = ScriptUtterance(
    segments=(ScriptSegment("please transfer me", 100, 1300),),
    speech_start_ms=100,
)  # speech lasts 1200 ms after speech_start


def make(profile: Profile = PROFILES["typical"], *utts: ScriptUtterance, **kw) -> SonioxScript:
    return SonioxScript(profile=profile, script=SttScript(utts or (UTT,)), rng=random.Random(5), **kw)


def run(core: SonioxScript, audio: bytes) -> list[tuple[int, ResultMessage]]:
    out = []
    for i in range(0, len(audio), FRAME):
        out.extend((core.audio_ms, m) for m in core.receive_audio(audio[i : i + FRAME]))
    return out


def finals(messages) -> list[str]:
    return [t.text for _, m in messages for t in m.tokens if t.is_final]


# --------------------------------------------------------------------- alignment and timing


def test_words_are_aligned_to_the_detected_onset_and_split_into_pieces():
    core = make()
    messages = run(core, utterance_audio(random.Random(1)))
    assert finals(messages)[:-1] == ["ple", "ase", " tran", "sfer", " me"]  # sub-word pieces
    assert finals(messages)[-1] == "<end>"
    ((_, offset),) = core.anchors
    assert abs((offset + 100) - 500) <= 40  # speech_start lands on the tone's onset at 500 ms
    assert "".join(finals(messages)[:-1]) == "please transfer me"


def test_tokens_stay_inside_the_audio_received_and_finals_come_first():
    core = make()
    for audio_ms, message in run(core, utterance_audio(random.Random(2))):
        assert message.final_audio_proc_ms <= message.total_audio_proc_ms <= audio_ms
        flags = [t.is_final for t in message.tokens]
        assert flags == sorted(flags, reverse=True)  # finals first, then non-finals
        for token in message.tokens:
            assert token.start_ms is not None and token.end_ms is not None
            assert 0 <= token.start_ms <= token.end_ms <= audio_ms
            if not token.is_final:
                assert token.end_ms <= message.total_audio_proc_ms


def test_nonfinal_lags_the_audio_by_the_partial_lag_then_turns_final():
    profile = PROFILES["slow"]
    core = make(profile)
    messages = run(core, utterance_audio(random.Random(3)))
    first_seen = {}
    final_seen = {}
    for audio_ms, message in messages:
        for token in message.tokens:
            table = final_seen if token.is_final else first_seen
            table.setdefault(token.text, (audio_ms, token.end_ms))
    at, end = first_seen[" me"]
    assert at - end >= profile.stt_partial_lag_ms - profile.jitter_ms
    assert final_seen[" me"][0] > at  # the same text, final, later


def test_no_audio_no_words():
    core = make()
    audio = utterance_audio(random.Random(4))
    half = run(core, audio[: 900 * 8])
    assert finals(half) == []  # 400 ms into the speech: nothing final yet
    assert core.audio_ms == 900


def test_explicit_audio_offset_skips_onset_detection():
    utt = ScriptUtterance(segments=(ScriptSegment("hello", 0, 400),), audio_offset_ms=200)
    core = make(PROFILES["fast"], utt, endpoint_detection=False)
    messages = run(core, tone_ulaw(1500, 0, random.Random(5)))  # silence only: no onset needed
    assert finals(messages) == ["hello"]
    token = next(t for _, m in messages for t in m.tokens if t.is_final)
    assert (token.start_ms, token.end_ms) == (200, 600)


# -------------------------------------------------------------- <end> after real silence


@pytest.mark.parametrize("name", ["fast", "typical", "slow"])
def test_end_comes_only_after_the_profiles_silence_on_the_received_audio(name):
    profile = PROFILES[name]
    core = make(profile)
    messages = run(core, utterance_audio(random.Random(6), tail_ms=2000))
    ends = [at for at, m in messages for t in m.tokens if t.text == "<end>"]
    assert len(ends) == 1
    speech_end_ms = 500 + 1200
    silence = ends[0] - speech_end_ms
    assert profile.stt_endpoint_silence_ms - profile.jitter_ms <= silence
    assert silence <= profile.stt_endpoint_silence_ms + profile.jitter_ms + 60


def test_pause_shorter_than_the_endpoint_silence_gives_no_end():
    rng = random.Random(7)
    audio = (
        tone_ulaw(500, 0, rng)
        + tone_ulaw(600, 8000, rng)
        + tone_ulaw(400, 0, rng)
        + tone_ulaw(600, 8000, rng)
    )
    utt = ScriptUtterance(segments=(ScriptSegment("one two", 0, 600), ScriptSegment("three", 1000, 1600)))
    messages = run(make(PROFILES["typical"], utt), audio)
    assert "<end>" not in finals(messages)


def test_no_end_without_endpoint_detection():
    messages = run(make(endpoint_detection=False), utterance_audio(random.Random(8)))
    assert "<end>" not in finals(messages)
    assert "".join(finals(messages)) == "please transfer me"  # words still turn final on their own


# --------------------------------------------------------------------- finalize and finish


def test_finalize_makes_heard_words_final_and_appends_fin():
    core = make(endpoint_detection=False)
    run(core, utterance_audio(random.Random(9))[: 2000 * 8])
    (message,) = core.finalize(trailing_silence_ms=200)
    texts = [t.text for t in message.tokens]
    assert texts[-1] == "<fin>" and all(t.is_final for t in message.tokens)
    assert message.final_audio_proc_ms == message.total_audio_proc_ms == 2000
    (again,) = core.finalize()
    assert [t.text for t in again.tokens] == ["<fin>"]  # finals are sent once


def test_finish_flushes_and_ends_with_finished():
    core = make(endpoint_detection=False)
    before = [m for _, m in run(core, utterance_audio(random.Random(10))[: 1750 * 8])]
    messages = core.finish()
    assert messages[-1].finished and messages[-1].tokens == []
    assert messages[0].tokens and all(t.is_final for t in messages[0].tokens)  # flushed at once
    text = "".join(t.text for m in before + messages for t in m.tokens if t.is_final)
    assert text == "please transfer me"


# ------------------------------------------------------------------------- resumed session


def test_resumed_session_recognises_the_replayed_audio_again():
    audio = utterance_audio(random.Random(11))
    old = make(PROFILES["fast"])
    run(old, audio[: 1200 * 8])  # dropped mid-utterance
    new = SonioxScript(profile=PROFILES["fast"], script=SttScript(), rng=random.Random(1), resume_from=old)
    replay_from_ms = 800
    messages = run(new, audio[replay_from_ms * 8 :])
    tokens = [t for _, m in messages for t in m.tokens if t.is_final and not t.text.startswith("<")]
    # "please" started before the replayed audio, so it is not heard again; the rest is, on the new timeline.
    assert [t.text for t in tokens] == [" tran", "sfer", " me"]
    assert tokens[-1].end_ms is not None and abs(tokens[-1].end_ms + replay_from_ms - 1700) <= 60


def test_energy_of_silence_and_tone():
    rng = random.Random(12)
    assert block_energy_db(tone_ulaw(20, 0, rng, noise=0), "mulaw") < 5
    assert block_energy_db(tone_ulaw(20, 8000, rng), "mulaw") > 60
    assert block_energy_db(b"\x00\x00" * 160, "pcm_s16le") == 0.0
