"""InboundBuffer: ordering, concealment and bounds, with fake ``now`` values (no clock, no loop).

Grouped by docs/providers.md 2.1 ("media": order is **not guaranteed**, reorder by ``chunk`` /
``sequence_number``) and 2.3 (inbound frame size undocumented, treat it as variable).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediasrv.errors import ConfigError
from mediasrv.jitter import InboundBuffer, InFrame
from mediasrv.jitter.buffer import ULAW_HALF_GAIN

FRAME = 160
WAIT_S = 0.04


def speech_frame(seq: int) -> bytes:
    """A distinct, non-silent mu-law frame for each counter (so mix-ups show)."""
    rng = random.Random(seq)
    return bytes(rng.randrange(0x10, 0xF0) for _ in range(FRAME))


def push_all(buf: InboundBuffer, seqs: list[int], now: float = 0.0) -> list[InFrame]:
    out: list[InFrame] = []
    for seq in seqs:
        buf.push(seq, speech_frame(seq), now)
        out += buf.pop_ready(now)
    return out


def magnitude(code: int) -> int:
    """Order of a mu-law code's loudness (bigger is louder)."""
    return ~code & 0x7F


# --------------------------------------------------------------------------- in order (2.1)


class TestInOrder:
    def test_each_frame_pops_at_the_now_it_was_pushed(self) -> None:
        buf = InboundBuffer()
        for i, seq in enumerate(range(2, 202)):
            now = i * 0.02
            buf.push(seq, speech_frame(seq), now)
            assert buf.pop_ready(now) == [InFrame(seq, speech_frame(seq), False)]
            assert buf.next_deadline() is None
        stats = buf.stats
        assert (stats.received, stats.released, stats.concealed, stats.max_depth) == (200, 200, 0, 0)

    def test_large_counters_need_no_wraparound(self) -> None:
        base = 2**63 - 5
        out = push_all(InboundBuffer(), [base + i for i in range(10)])
        assert [f.seq for f in out] == [base + i for i in range(10)]

    def test_pop_ready_on_an_empty_buffer_returns_nothing(self) -> None:
        buf = InboundBuffer()
        assert buf.pop_ready(1.0) == []
        assert buf.next_deadline() is None


# --------------------------------------------------------------------------- reordering (2.1)


class TestReordering:
    def test_a_gap_holds_later_frames_until_the_missing_one_arrives(self) -> None:
        buf = InboundBuffer()
        assert [f.seq for f in push_all(buf, [1, 3, 4], now=0.0)] == [1]
        assert buf.next_deadline() == pytest.approx(WAIT_S)
        assert buf.depth_frames == 3
        buf.push(2, speech_frame(2), 0.01)
        assert [(f.seq, f.concealed) for f in buf.pop_ready(0.01)] == [(2, False), (3, False), (4, False)]
        assert buf.next_deadline() is None
        assert buf.stats.reordered == 1

    def test_the_next_hole_keeps_the_time_it_was_noticed(self) -> None:
        buf = InboundBuffer()
        push_all(buf, [1], now=0.0)
        buf.push(4, speech_frame(4), 0.0)  # holes 2 and 3 noticed at 0.0
        buf.push(2, speech_frame(2), 0.03)
        assert [f.seq for f in buf.pop_ready(0.03)] == [2]
        assert buf.next_deadline() == pytest.approx(WAIT_S)  # not 0.03 + WAIT_S
        assert [(f.seq, f.concealed) for f in buf.pop_ready(WAIT_S)] == [(3, True), (4, False)]

    @settings(max_examples=300, deadline=None)
    @given(
        first=st.integers(min_value=0, max_value=2**40),
        offsets=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=120),
        dups=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 20)), max_size=30),
    )
    def test_any_shuffle_within_the_window_comes_out_whole_and_in_order(
        self, first: int, offsets: list[int], dups: list[tuple[int, int]]
    ) -> None:
        n = len(offsets)
        # Each frame lands at most 20 places from its own: at 1 ms per arrival no hole waits 40 ms.
        arrival = sorted(range(n), key=lambda i: (i + offsets[i], i))
        if arrival[0] != 0:  # the first frame pushed sets the counter the buffer expects
            arrival.remove(0)
            arrival.insert(0, 0)
        for source, later in dups:  # a copy of an already-pushed frame, up to 20 places later
            at = source % len(arrival)
            arrival.insert(min(at + 1 + later, len(arrival)), arrival[at])
        buf = InboundBuffer()
        out: list[InFrame] = []
        for k, i in enumerate(arrival):
            now = k * 0.001
            buf.push(first + i, speech_frame(i), now)
            out += buf.pop_ready(now)
        assert buf.next_deadline() is None
        assert out == [InFrame(first + i, speech_frame(i), False) for i in range(n)]
        stats = buf.stats
        assert stats.duplicates == len(dups)
        assert (stats.late, stats.concealed, stats.overflow_drops) == (0, 0, 0)
        assert stats.released == n
        assert stats.max_depth <= 42

    @settings(max_examples=300, deadline=None)
    @given(
        n=st.integers(min_value=1, max_value=200),
        seed=st.integers(min_value=0, max_value=2**32),
        loss=st.floats(min_value=0.0, max_value=0.3),
        spread_frames=st.integers(min_value=0, max_value=40),
        step_s=st.sampled_from([0.0, 0.001, 0.02]),
    )
    def test_with_loss_and_any_timing_the_output_is_contiguous_and_bounded(
        self, n: int, seed: int, loss: float, spread_frames: int, step_s: float
    ) -> None:
        rng = random.Random(seed)
        kept = [i for i in range(n) if i == 0 or rng.random() >= loss]
        arrival = sorted(kept, key=lambda i: i + rng.uniform(0, spread_frames))
        for _ in range(n // 10):  # a copy of a pushed frame, up to 10 places later
            at = rng.randrange(len(arrival))
            arrival.insert(at + 1 + rng.randrange(10), arrival[at])
        buf = InboundBuffer(max_depth_frames=20)
        out: list[InFrame] = []
        now = 0.0
        for i in arrival:
            buf.push(100 + i, speech_frame(i), now)
            out += buf.pop_ready(now)
            now += step_s
        out += buf.pop_ready(now + 1.0)
        seqs = [f.seq for f in out]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, no repeats, no holes
        for f in out:
            assert f.concealed or f.payload == speech_frame(f.seq - 100)
        stats = buf.stats
        assert stats.received == stats.released + stats.duplicates + stats.late
        assert stats.released == sum(1 for f in out if not f.concealed)
        assert stats.concealed == sum(1 for f in out if f.concealed)
        assert stats.max_depth <= 20
        assert buf.next_deadline() is None


# --------------------------------------------------------------------------- loss and concealment


class TestConcealment:
    def test_a_hole_is_concealed_at_the_deadline_and_not_before(self) -> None:
        buf = InboundBuffer()
        push_all(buf, [7, 9], now=1.0)
        deadline = buf.next_deadline()
        assert deadline is not None
        assert deadline == pytest.approx(1.0 + WAIT_S)
        assert buf.pop_ready(deadline - 0.001) == []
        out = buf.pop_ready(deadline)
        assert [(f.seq, f.concealed) for f in out] == [(8, True), (9, False)]
        assert out[0].payload == speech_frame(7).translate(ULAW_HALF_GAIN)
        assert buf.stats.concealed == 1

    def test_handle_timer_releases_like_pop_ready(self) -> None:
        buf = InboundBuffer()
        push_all(buf, [1, 3], now=0.0)
        buf.handle_timer(0.01)
        assert buf.pop_ready(0.01) == []
        buf.handle_timer(WAIT_S)
        assert [f.seq for f in buf.pop_ready(WAIT_S)] == [2, 3]

    def test_a_push_after_the_deadline_resolves_the_hole_first(self) -> None:
        buf = InboundBuffer()
        push_all(buf, [1, 3], now=0.0)
        buf.push(4, speech_frame(4), 0.05)
        assert [(f.seq, f.concealed) for f in buf.pop_ready(0.05)] == [(2, True), (3, False), (4, False)]

    def test_repeat_fades_6_db_per_frame_then_turns_to_silence(self) -> None:
        buf = InboundBuffer()
        push_all(buf, [1, 7], now=0.0)
        out = buf.pop_ready(WAIT_S)
        assert [(f.seq, f.concealed) for f in out] == [(s, s != 7) for s in range(2, 8)]
        fade = speech_frame(1)
        for frame in out[:3]:
            fade = fade.translate(ULAW_HALF_GAIN)
            assert frame.payload == fade
        assert [f.payload for f in out[3:5]] == [b"\xff" * FRAME] * 2

    def test_silence_mode_conceals_with_the_given_silence(self) -> None:
        alaw_silence = b"\xd5" * FRAME
        buf = InboundBuffer(silence=alaw_silence, conceal="silence")
        push_all(buf, [1, 3], now=0.0)
        assert buf.pop_ready(1.0)[0] == InFrame(2, alaw_silence, True)

    def test_half_gain_table_keeps_sign_and_never_gets_louder(self) -> None:
        assert ULAW_HALF_GAIN[0xFF] == 0xFF
        for code in range(256):
            out = ULAW_HALF_GAIN[code]
            assert magnitude(out) <= magnitude(code)
            assert magnitude(out) == 0 or (out & 0x80) == (code & 0x80)
        assert magnitude(ULAW_HALF_GAIN[0x00]) < magnitude(0x00)  # the loudest code gets quieter

    def test_a_hole_wider_than_max_conceal_frames_is_jumped_over(self) -> None:
        buf = InboundBuffer(max_conceal_frames=5)
        out = push_all(buf, [1, 10**9], now=0.0)  # far deeper than max_depth_frames: jumps at once
        assert [(f.seq, f.concealed) for f in out] == [(1, False), (10**9, False)]
        assert buf.stats.resyncs == 1
        out = push_all(buf, [10**9 + 8], now=1.0)  # a 7-frame hole, within the depth: waits, then jumps
        assert out == []
        assert [f.seq for f in buf.pop_ready(1.0 + WAIT_S)] == [10**9 + 8]
        assert buf.stats.resyncs == 2
        assert push_all(buf, [10**9 + 1], now=2.0) == []  # its slot was jumped over
        assert buf.stats.late == 1


# --------------------------------------------------------------------------- drops


class TestDrops:
    def test_a_frame_after_its_slot_was_concealed_is_late_and_dropped(self) -> None:
        buf = InboundBuffer()
        push_all(buf, [1, 3], now=0.0)
        buf.pop_ready(1.0)
        assert push_all(buf, [2], now=1.0) == []
        stats = buf.stats
        assert (stats.late, stats.duplicates) == (1, 0)

    def test_duplicates_of_held_or_released_frames_are_dropped(self) -> None:
        buf = InboundBuffer()
        out = push_all(buf, [1, 2, 4, 4, 2, 1, 3])
        assert [f.seq for f in out] == [1, 2, 3, 4]
        assert buf.stats.duplicates == 3

    def test_depth_is_bounded_without_waiting_for_the_deadline(self) -> None:
        buf = InboundBuffer(max_depth_frames=10)
        out = push_all(buf, [1, *range(3, 20)], now=0.0)
        # when 12 arrives the buffer would span 2..12 (11 frames): hole 2 is concealed at once
        assert [(f.seq, f.concealed) for f in out] == [
            (1, False),
            (2, True),
            *((s, False) for s in range(3, 20)),
        ]
        assert buf.stats.max_depth == 10

    def test_unpopped_frames_are_bounded(self) -> None:
        buf = InboundBuffer(max_ready_frames=5)
        for seq in range(1, 9):
            buf.push(seq, speech_frame(seq), 0.0)
        assert [f.seq for f in buf.pop_ready(0.0)] == [4, 5, 6, 7, 8]
        assert buf.stats.overflow_drops == 3

    def test_unpopped_concealment_is_bounded_too(self) -> None:
        buf = InboundBuffer(max_ready_frames=3)
        for seq in (1, 6):
            buf.push(seq, speech_frame(seq), 0.0)
        assert [(f.seq, f.concealed) for f in buf.pop_ready(1.0)] == [(4, True), (5, True), (6, False)]
        assert buf.stats.overflow_drops == 3


# --------------------------------------------------------------------------- frame size (2.3)


class TestVariableFrameSize:
    def test_odd_sizes_pass_through_and_concealment_uses_the_last_size(self) -> None:
        buf = InboundBuffer(conceal="silence")
        buf.push(1, b"\x20" * 960, 0.0)  # 120 ms chunk
        buf.push(3, b"\x30" * 80, 0.0)
        out = buf.pop_ready(1.0)
        assert [len(f.payload) for f in out] == [960, 960, 80]
        assert out[1] == InFrame(2, b"\xff" * 960, True)

    def test_frame_bytes_sizes_the_silence_frame(self) -> None:
        buf = InboundBuffer(frame_bytes=320, conceal="silence")  # default silence is 160 bytes
        for seq in (1, 3):
            buf.push(seq, b"\x20" * 320, 0.0)
        assert buf.pop_ready(1.0)[1] == InFrame(2, b"\xff" * 320, True)


# --------------------------------------------------------------------------- new stream


class TestNewStream:
    def test_reset_forgets_the_counter_but_keeps_stats(self) -> None:
        buf = InboundBuffer()
        push_all(buf, [50, 51, 53])
        buf.reset()
        assert buf.next_deadline() is None
        assert buf.pop_ready(1.0) == []
        assert [f.seq for f in push_all(buf, [1, 2])] == [1, 2]
        assert buf.stats.received == 5

    def test_a_counter_far_behind_is_taken_for_a_restarted_stream(self) -> None:
        buf = InboundBuffer()
        push_all(buf, list(range(1, 301)))
        out = push_all(buf, [303, 1, 2])  # 303 is held; then the counter restarts at 1
        assert [f.seq for f in out] == [303, 1, 2]
        assert buf.stats.resyncs == 1
        assert buf.next_deadline() is None

    def test_one_stray_old_frame_does_not_restart_the_count(self) -> None:
        buf = InboundBuffer()
        push_all(buf, list(range(1, 301)))
        assert [f.seq for f in push_all(buf, [5, 301, 302])] == [301, 302]
        stats = buf.stats
        assert (stats.late, stats.resyncs) == (1, 0)

    def test_two_unrelated_old_frames_are_both_late(self) -> None:
        buf = InboundBuffer()
        push_all(buf, list(range(1, 301)))
        assert [f.seq for f in push_all(buf, [5, 50, 301])] == [301]
        stats = buf.stats
        assert (stats.late, stats.resyncs, stats.received) == (2, 0, 303)

    def test_a_restart_with_a_hole_holds_behind_it(self) -> None:
        buf = InboundBuffer()
        push_all(buf, list(range(1000, 1200)))
        assert [f.seq for f in push_all(buf, [1, 3])] == [1]
        assert [(f.seq, f.concealed) for f in buf.pop_ready(1.0)] == [(2, True), (3, False)]

    def test_bad_configuration_is_refused(self) -> None:
        with pytest.raises(ConfigError):
            InboundBuffer(max_depth_frames=0)
        with pytest.raises(ConfigError):
            InboundBuffer(silence=b"")
        with pytest.raises(ConfigError):
            InboundBuffer(conceal="noise")  # type: ignore[arg-type]
