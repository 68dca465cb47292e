"""Jitter hot paths: InboundBuffer push + pop_ready, OutboundPacer enqueue + poll, per 20 ms frame.

Run: ``pytest bench/bench_jitter.py -o python_files='bench_*.py' --benchmark-only``.

Each benchmark first checks its result (frames out in order, nothing lost, exact framing), then
times one frame per round on a long-running core, then checks the mean against the real-time
budget (2 % of one 20 ms frame). Inputs are real speech from the dev corpus, mu-law encoded.
"""

from __future__ import annotations

import random
import warnings
import wave

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from mediasrv.corpus import dev_corpus
from mediasrv.jitter import Frame, InboundBuffer, InFrame, OutboundPacer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

CORPUS_DIR = dev_corpus()
FRAME_BYTES = 160
FRAME_S = 0.020
REALTIME_BUDGET_S = 0.02 * FRAME_S  # 2 % of a frame: 400 us
LAP_FRAMES = 500  # the reordered stream repeats with this period (counters keep growing)


def _speech_ulaw() -> bytes:
    """Enough recorded calls, back to back, for one lap plus a chunk (a few corpus files)."""
    pcm = b""
    for path in sorted(CORPUS_DIR.glob("dev*.wav")):
        with wave.open(str(path), "rb") as wav:
            assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
            pcm += wav.readframes(wav.getnframes())
        if len(pcm) > 2 * (LAP_FRAMES + 1) * FRAME_BYTES:
            break
    ulaw = audioop.lin2ulaw(pcm, 2)
    assert len(ulaw) > (LAP_FRAMES + 1) * FRAME_BYTES
    return ulaw


ULAW = _speech_ulaw()
FRAMES = [ULAW[i : i + FRAME_BYTES] for i in range(0, LAP_FRAMES * FRAME_BYTES, FRAME_BYTES)]


def _check_budget(benchmark: BenchmarkFixture) -> None:
    assert benchmark.stats is not None
    mean_s = benchmark.stats.stats.mean
    assert mean_s < REALTIME_BUDGET_S, mean_s


# --------------------------------------------------------------------------- InboundBuffer


class InOrderFeed:
    """One in-order frame per call, 20 ms apart, like a clean Telnyx stream."""

    def __init__(self) -> None:
        self.buf = InboundBuffer()
        self.seq = 2  # Telnyx's "start" takes sequence_number 1
        self.now = 1000.0

    def step(self) -> list[InFrame]:
        seq = self.seq
        self.buf.push(seq, FRAMES[seq % LAP_FRAMES], self.now)
        out = self.buf.pop_ready(self.now)
        self.seq = seq + 1
        self.now += FRAME_S
        return out


def _reordered_arrival(rng: random.Random) -> tuple[list[tuple[float, int]], set[int]]:
    """One lap of (arrival time, frame index): each frame 0-35 ms late (exponential, mean 8 ms),
    so about a third arrive after a later frame; 1 % are lost. A hole is noticed no earlier than
    20 ms before its frame was due and waited for 40 ms, so only lost frames are concealed.
    """
    lost = {i for i in range(5, LAP_FRAMES - 5) if rng.random() < 0.01}
    arrival = [(i * FRAME_S + min(rng.expovariate(1 / 0.008), 0.035), i) for i in range(LAP_FRAMES)]
    return sorted(a for a in arrival if a[1] not in lost), lost


ARRIVAL, LOST = _reordered_arrival(random.Random(7))
LAP_S = LAP_FRAMES * FRAME_S


class ReorderedFeed:
    """One frame per call from a shuffled, lossy stream, at its arrival time."""

    def __init__(self) -> None:
        self.buf = InboundBuffer()
        self.k = 0
        self.now = 1000.0

    def step(self) -> list[InFrame]:
        lap, pos = divmod(self.k, len(ARRIVAL))
        arrival_s, i = ARRIVAL[pos]
        self.now = 1000.0 + lap * LAP_S + arrival_s
        self.buf.push(lap * LAP_FRAMES + i, FRAMES[i], self.now)
        self.k += 1
        return self.buf.pop_ready(self.now)


@pytest.mark.benchmark(group="jitter-inbound push + pop_ready per frame")
def test_inbound_in_order(benchmark: BenchmarkFixture) -> None:
    check = InOrderFeed()
    out = [frame for _ in range(2 * LAP_FRAMES) for frame in check.step()]
    assert out == [InFrame(s, FRAMES[s % LAP_FRAMES], False) for s in range(2, 2 + 2 * LAP_FRAMES)]
    feed = InOrderFeed()
    benchmark(feed.step)
    stats = feed.buf.stats
    assert stats.released == stats.received and stats.concealed == 0
    _check_budget(benchmark)


@pytest.mark.benchmark(group="jitter-inbound push + pop_ready per frame")
def test_inbound_reordered(benchmark: BenchmarkFixture) -> None:
    check = ReorderedFeed()
    out = [frame for _ in range(2 * len(ARRIVAL)) for frame in check.step()]
    out += check.buf.pop_ready(check.now + 1.0)
    assert [f.seq for f in out] == list(range(2 * LAP_FRAMES))
    for f in out:
        i = f.seq % LAP_FRAMES
        assert f.concealed == (i in LOST)
        assert f.concealed or f.payload == FRAMES[i]
    stats = check.buf.stats
    assert (stats.concealed, stats.late, stats.duplicates) == (2 * len(LOST), 0, 0)
    assert stats.reordered > 0
    feed = ReorderedFeed()
    benchmark(feed.step)
    assert feed.buf.stats.late == 0
    _check_budget(benchmark)


# --------------------------------------------------------------------------- OutboundPacer


class PacerFeed:
    """Per call: one 20 ms chunk of TTS audio arrives (cut 37 bytes off frame boundaries), one poll."""

    def __init__(self) -> None:
        self.pacer = OutboundPacer(lead_ms=80)
        self.now = 1000.0
        self.steps = 0
        self.offset = 0
        self.pacer.enqueue(ULAW[:37], self.now)  # so every later chunk straddles two frames

    def step(self) -> list[Frame]:
        start = 37 + self.offset
        self.pacer.enqueue(ULAW[start : start + FRAME_BYTES], self.now)
        out = self.pacer.poll(self.now)
        self.offset = (self.offset + FRAME_BYTES) % (LAP_FRAMES * FRAME_BYTES - FRAME_BYTES)
        # Computed, not accumulated: summing 0.02 a million times drifts past the pacer's slack.
        self.steps += 1
        self.now = 1000.0 + self.steps * FRAME_S
        return out  # type: ignore[return-value]  # no marks are placed here


@pytest.mark.benchmark(group="jitter-outbound enqueue + poll per 20 ms frame")
def test_pacer_enqueue_poll(benchmark: BenchmarkFixture) -> None:
    check = PacerFeed()
    batches = [check.step() for _ in range(400)]
    assert all(len(batch) == 1 for batch in batches)  # real-time pace: one frame per 20 ms
    sent = b"".join(frame.payload for batch in batches for frame in batch)
    assert sent == ULAW[: 400 * FRAME_BYTES]
    assert check.pacer.stats.underruns == 0
    feed = PacerFeed()
    benchmark(feed.step)
    stats = feed.pacer.stats
    assert stats.underruns == 0 and stats.late_polls == 0
    _check_budget(benchmark)


@pytest.mark.benchmark(group="jitter-outbound enqueue + poll per 20 ms frame")
def test_pacer_large_chunks(benchmark: BenchmarkFixture) -> None:
    """A 500 ms TTS chunk (4000 B) then 25 polls 20 ms apart; the benchmark reports per round."""

    def reply() -> int:
        pacer = OutboundPacer(lead_ms=80)
        now = 1000.0
        pacer.enqueue(ULAW[:4000], now)
        pacer.end_utterance(now)
        sent = 0
        for _ in range(25):
            sent += len(pacer.poll(now))
            now += FRAME_S
        return sent

    assert reply() == 25
    benchmark(reply)
    assert benchmark.stats is not None
    assert benchmark.stats.stats.mean / 25 < REALTIME_BUDGET_S
