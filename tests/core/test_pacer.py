"""OutboundPacer with a fake clock: framing, pacing, marks and clear accounting.

Grouped by docs/providers.md 2.2 (media, ``mark`` echoed when the audio before it has played, ``clear``
drops the queue) and 2.3 (20 ms = 160 bytes of PCMU; Telnyx queues what we send; silence 0xFF).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediasrv.errors import ConfigError
from mediasrv.jitter import ClearReport, Frame, Mark, OutboundPacer, OutItem

FRAME = 160
FRAME_S = 0.02


def speech(n_bytes: int, seed: int = 1) -> bytes:
    """Non-silent mu-law bytes (never 0xFF, so padding is easy to spot)."""
    rng = random.Random(seed)
    return bytes(rng.randrange(0x10, 0xF0) for _ in range(n_bytes))


def drain(pacer: OutboundPacer, until: float) -> list[tuple[float, OutItem]]:
    """Poll at every ``next_deadline()`` up to ``until``; return (time, item) pairs."""
    out: list[tuple[float, OutItem]] = []
    while (deadline := pacer.next_deadline()) is not None and deadline <= until:
        items = pacer.poll(deadline)
        assert items, "next_deadline() promised something"
        out += [(deadline, item) for item in items]
    return out


def frames_of(items: list[tuple[float, OutItem]]) -> bytes:
    return b"".join(item.payload for _, item in items if isinstance(item, Frame))


# --------------------------------------------------------------------------- framing (2.3)


class TestFraming:
    def test_exact_frames_and_the_tail_padded_with_silence_at_the_end(self) -> None:
        audio = speech(400)
        pacer = OutboundPacer()
        pacer.enqueue(audio, 0.0)
        assert pacer.queued_ms == pytest.approx(50.0)
        pacer.end_utterance(0.0)
        frames = [item for _, item in drain(pacer, 10.0)]
        assert [len(f.payload) for f in frames if isinstance(f, Frame)] == [FRAME] * 3
        assert frames_of([(0.0, f) for f in frames]) == audio + b"\xff" * 80

    @settings(max_examples=200, deadline=None)
    @given(sizes=st.lists(st.integers(min_value=0, max_value=700), min_size=1, max_size=30))
    def test_chunk_boundaries_insert_no_silence(self, sizes: list[int]) -> None:
        pacer = OutboundPacer()
        audio = speech(sum(sizes), seed=len(sizes))
        sent: list[tuple[float, OutItem]] = []
        offset = 0
        for i, size in enumerate(sizes):
            now = i * 0.01
            pacer.enqueue(audio[offset : offset + size], now)
            offset += size
            sent += [(now, item) for item in pacer.poll(now)]
        sent += drain(pacer, 100.0)
        whole = len(audio) // FRAME * FRAME
        assert frames_of(sent) == audio[:whole]  # the remainder waits: no padding yet
        pacer.end_utterance(100.0)
        tail = frames_of(drain(pacer, 200.0))
        assert tail == (audio[whole:] + b"\xff" * (FRAME - len(audio) + whole) if len(audio) > whole else b"")

    def test_end_utterance_without_a_remainder_adds_nothing(self) -> None:
        pacer = OutboundPacer()
        pacer.enqueue(speech(320), 0.0)
        pacer.end_utterance(0.0)
        assert len(drain(pacer, 1.0)) == 2

    def test_bytearray_and_memoryview_input_is_accepted(self) -> None:
        pacer = OutboundPacer()
        pacer.enqueue(bytearray(speech(FRAME)), 0.0)  # type: ignore[arg-type]
        pacer.enqueue(memoryview(speech(FRAME, seed=2)), 0.0)  # type: ignore[arg-type]
        assert frames_of(drain(pacer, 1.0)) == speech(FRAME) + speech(FRAME, seed=2)


# --------------------------------------------------------------------------- pacing (2.3)


class TestPacing:
    def test_first_frame_goes_at_once_then_real_time_with_the_lead(self) -> None:
        pacer = OutboundPacer(lead_ms=80)
        pacer.enqueue(speech(50 * FRAME), 3.0)
        sent = drain(pacer, 10.0)
        times = [t for t, _ in sent]
        assert len(times) == 50
        # frame k plays at 3.0 + 20k ms and leaves 80 ms before that, but never before 3.0
        assert times == pytest.approx([3.0 + max(0.0, (k - 4) * FRAME_S) for k in range(50)])
        assert pacer.stats.frames_sent == 50
        assert pacer.stats.late_polls == 0

    @pytest.mark.parametrize("lead_ms", [0, 20, 60, 80, 100])
    def test_lead_never_exceeds_lead_ms_plus_one_frame(self, lead_ms: int) -> None:
        rng = random.Random(lead_ms)
        pacer = OutboundPacer(lead_ms=lead_ms)
        now, sent_frames, start = 0.0, 0, None
        pacer.enqueue(speech(30 * FRAME), now)
        while sent_frames < 30:
            for item in pacer.poll(now):
                assert isinstance(item, Frame)
                sent_frames += 1
                start = now if start is None else start
            assert start is not None
            ahead_s = start + sent_frames * FRAME_S - now
            assert ahead_s <= (lead_ms + 20) / 1000 + 1e-9
            now += rng.uniform(0.0, 0.02)

    @settings(max_examples=200, deadline=None)
    @given(
        events=st.lists(
            st.tuples(st.floats(min_value=0.0, max_value=0.05), st.integers(min_value=0, max_value=900)),
            min_size=1,
            max_size=40,
        ),
        lead_ms=st.sampled_from([0, 60, 80, 100]),
    )
    def test_next_deadline_is_exactly_when_poll_has_something(
        self, events: list[tuple[float, int]], lead_ms: int
    ) -> None:
        pacer = OutboundPacer(lead_ms=lead_ms)
        now = 0.0
        for gap_s, size in events:
            target = now + gap_s
            while (deadline := pacer.next_deadline()) is not None and deadline <= target:
                if deadline - 1e-4 > now:
                    assert pacer.poll(deadline - 1e-4) == []
                assert pacer.poll(deadline) != []
                now = deadline
            now = target
            pacer.enqueue(speech(size), now)
            if size % 7 == 0:
                pacer.add_mark(f"m{size}")
            assert pacer.next_deadline() is None or pacer.next_deadline() >= now  # type: ignore[operator]

    def test_underrun_restarts_the_clock_without_silence(self) -> None:
        pacer = OutboundPacer(lead_ms=80)
        pacer.enqueue(speech(3 * FRAME), 0.0)
        assert len(pacer.poll(0.0)) == 3  # plays 0.00-0.06
        assert pacer.next_deadline() is None
        assert pacer.is_speaking(0.05)
        assert not pacer.is_speaking(0.07)
        pacer.enqueue(speech(2 * FRAME, seed=2), 0.1)  # the TTS was 40 ms late
        assert pacer.stats.underruns == 1
        sent = pacer.poll(0.1)
        assert sent == [Frame(speech(2 * FRAME, seed=2)[:FRAME]), Frame(speech(2 * FRAME, seed=2)[FRAME:])]
        assert pacer.played_ms(0.1) == 80.0  # 3 frames + the one starting at 0.1
        assert pacer.played_ms(0.125) == 100.0
        assert pacer.stats.late_polls == 0

    def test_a_padded_tail_after_the_audio_ran_out_is_an_underrun(self) -> None:
        pacer = OutboundPacer()
        pacer.enqueue(speech(FRAME + 40), 0.0)
        pacer.poll(0.0)
        pacer.end_utterance(0.5)
        assert pacer.stats.underruns == 1

    def test_a_new_utterance_after_silence_is_not_an_underrun(self) -> None:
        pacer = OutboundPacer()
        pacer.enqueue(speech(FRAME), 0.0)
        pacer.end_utterance(0.0)
        pacer.poll(0.0)
        pacer.enqueue(speech(FRAME), 1.0)
        pacer.enqueue(speech(FRAME), 1.0)  # chunks of one reply, the first not yet sent
        assert pacer.stats.underruns == 0

    def test_a_late_poll_is_counted_but_not_as_an_underrun(self) -> None:
        pacer = OutboundPacer(lead_ms=80)
        pacer.enqueue(speech(20 * FRAME), 0.0)
        assert len(pacer.poll(0.0)) == 5  # frame 5 is due at 0.02
        sent = pacer.poll(0.2)  # 180 ms late: the sent audio ended at 0.1, the clock restarts
        assert len(sent) == 5
        stats = pacer.stats
        assert (stats.late_polls, stats.underruns) == (1, 0)
        assert stats.max_lateness_ms == pytest.approx(180.0)


# --------------------------------------------------------------------------- marks (2.2)


class TestMarks:
    def test_marks_follow_the_audio_queued_before_them(self) -> None:
        pacer = OutboundPacer()
        pacer.add_mark("start")  # nothing queued: due at once
        assert pacer.next_deadline() == 0.0
        assert pacer.poll(0.0) == [Mark("start")]
        pacer.enqueue(speech(3 * FRAME), 0.0)
        pacer.add_mark("a")
        pacer.enqueue(speech(100, seed=2), 0.0)
        pacer.add_mark("b")  # a 100-byte remainder is waiting: b follows the frame that holds it
        pacer.enqueue(speech(100, seed=3), 0.0)
        pacer.add_mark("c")
        pacer.end_utterance(0.0)
        pacer.add_mark("end")
        kinds = [item.name if isinstance(item, Mark) else len(item.payload) for _, item in drain(pacer, 1.0)]
        assert kinds == [160, 160, 160, "a", 160, "b", 160, "c", "end"]

    def test_a_mark_on_an_idle_pacer_is_due_at_the_latest_now(self) -> None:
        pacer = OutboundPacer()
        pacer.enqueue(speech(FRAME), 2.0)
        pacer.poll(2.0)
        pacer.add_mark("m")
        assert pacer.next_deadline() == 2.0
        assert pacer.poll(2.0) == [Mark("m")]
        assert pacer.next_deadline() is None

    def test_an_echo_proves_the_audio_before_it_played(self) -> None:
        pacer = OutboundPacer(lead_ms=80)
        pacer.enqueue(speech(2 * FRAME), 0.0)
        pacer.add_mark("two")
        pacer.enqueue(speech(10 * FRAME), 0.0)
        drain(pacer, 0.0)
        assert pacer.played_ms(0.0) == 20.0
        pacer.mark_echoed("two", 0.01)  # Telnyx is ahead of the model: both frames have played
        assert pacer.played_ms(0.01) == 40.0
        pacer.mark_echoed("unknown", 0.01)  # ignored
        report = pacer.clear(0.01)
        assert report.pending_marks == []
        assert report.played_ms == 40.0


# --------------------------------------------------------------------------- clear (2.2)


class TestClear:
    def test_clear_splits_played_sent_and_dropped_exactly(self) -> None:
        pacer = OutboundPacer(lead_ms=80)
        pacer.enqueue(speech(3 * FRAME), 0.0)
        pacer.add_mark("m1")  # after frame 2, which ends at 0.06
        pacer.enqueue(speech(6 * FRAME, seed=2), 0.0)
        pacer.add_mark("m2")  # after frame 8, which starts at 0.16
        pacer.enqueue(speech(12 * FRAME, seed=3), 0.0)
        pacer.add_mark("m3")  # after frame 20, never sent
        pacer.enqueue(speech(FRAME + 80, seed=4), 0.0)  # frame 21, then an 80-byte remainder
        pacer.add_mark("m4")  # waits for the remainder's frame
        sent = drain(pacer, 0.1)  # frames 0..9 (frame k leaves at (k-4)*20 ms)
        assert sum(isinstance(item, Frame) for _, item in sent) == 10
        assert pacer.is_speaking(0.105)
        report = pacer.clear(0.105)
        # started by 0.105: frames 0..5; sent but not started: 6..9; never sent: 10..21 + 80 bytes
        assert report == ClearReport(
            played_ms=120.0,
            dropped_ms=12 * 20.0 + 10.0,
            sent_unplayed_ms=80.0,
            pending_marks=["m2", "m3", "m4"],
        )
        assert pacer.next_deadline() is None
        assert pacer.queued_ms == 0.0
        assert not pacer.is_speaking(0.105)
        assert pacer.played_ms(0.5) == 120.0  # the cleared turn's figure stays

    def test_a_new_turn_after_clear_starts_at_once_and_counts_from_zero(self) -> None:
        pacer = OutboundPacer()
        pacer.enqueue(speech(10 * FRAME), 0.0)
        pacer.poll(0.0)
        pacer.clear(0.03)
        pacer.enqueue(speech(2 * FRAME, seed=5), 0.03)
        assert pacer.poll(0.03) == [
            Frame(speech(2 * FRAME, seed=5)[:FRAME]),
            Frame(speech(2 * FRAME, seed=5)[FRAME:]),
        ]
        assert pacer.played_ms(0.03) == 20.0
        assert pacer.played_ms(0.06) == 40.0
        assert pacer.stats.underruns == 0

    def test_clear_on_an_idle_pacer_reports_nothing(self) -> None:
        assert OutboundPacer().clear(5.0) == ClearReport(
            played_ms=0.0, dropped_ms=0.0, sent_unplayed_ms=0.0, pending_marks=[]
        )

    def test_an_utterance_queued_behind_another_joins_its_turn(self) -> None:
        pacer = OutboundPacer(lead_ms=0)
        pacer.enqueue(speech(2 * FRAME), 0.0)
        pacer.end_utterance(0.0)
        pacer.enqueue(speech(2 * FRAME, seed=2), 0.0)  # nothing sent yet
        drain(pacer, 1.0)
        assert pacer.played_ms(1.0) == 80.0

    def test_back_to_back_utterances_form_one_turn(self) -> None:
        pacer = OutboundPacer()
        pacer.enqueue(speech(2 * FRAME), 0.0)
        pacer.end_utterance(0.0)
        drain(pacer, 0.0)
        pacer.enqueue(speech(2 * FRAME), 0.01)  # the first reply is still playing
        pacer.end_utterance(0.01)
        drain(pacer, 0.01)
        assert pacer.clear(0.065).played_ms == 80.0
        pacer.enqueue(speech(FRAME), 1.0)  # idle since 0.065: a new turn
        pacer.poll(1.0)
        assert pacer.played_ms(1.0) == 20.0


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs", [{"lead_ms": 120}, {"lead_ms": -1}, {"frame_bytes": 0}, {"frame_ms": 0}, {"silence_byte": 256}]
)
def test_bad_configuration_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        OutboundPacer(**kwargs)
