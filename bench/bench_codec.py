"""G.711 and resampling hot paths, one 20 ms frame per round, beside stdlib/soxr baselines.

Run: ``pytest bench/bench_codec.py --benchmark-only`` (or ``pytest bench --benchmark-only``).

Inputs are real speech (``dev002.wav``, its 64 loudest 20 ms frames, cycled), raised to
the TTS rates with mediasrv's own 8 kHz -> N kHz resampler. Every benchmark first checks
its result (lengths, and that what it encodes decodes back near the input), then times it,
then checks the mean against the real-time budget (2 % of a 20 ms frame). Groups put
mediasrv beside its baselines from the same run:

* ``audioop.ratecv`` + ``lin2ulaw``: the stdlib path, no anti-alias filter at all;
* ``soxr.ResampleStream`` + ``audioop.lin2ulaw``: pipecat's ``pcm_to_ulaw`` (skipped if
  soxr is not installed); it holds back the first 60-100 ms of every stream.

The outbound 16 kHz -> 8 kHz mu-law path has a 3 us per frame target (reported, not
asserted: shared CI machines are noisy).
"""

from __future__ import annotations

import itertools
import warnings
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import mediasrv
from mediasrv.codec import Resampler, UlawEncoder, ulaw_decode, ulaw_encode
from mediasrv.corpus import dev_corpus

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

try:
    import soxr
except ImportError:  # pragma: no cover - optional bench dependency
    soxr = None

CORPUS_WAVS = (
    Path(mediasrv.__file__).parent / "data" / "demo" / "dev002.wav",
    (dev_corpus() / "dev002.wav"),
)
FRAME_MS = 20
LINE_RATE_HZ = 8000
N_FRAMES = 64
REALTIME_BUDGET_S = 0.02 * FRAME_MS / 1000  # 2 % of a frame: 400 us
OUTBOUND_TARGET_S = 3e-6

needs_soxr = pytest.mark.skipif(soxr is None, reason="soxr not installed (pip install mediasrv[bench])")


def _speech_8k() -> np.ndarray:
    path = next(p for p in CORPUS_WAVS if p.exists())
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (LINE_RATE_HZ, 2, 1)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    frame = LINE_RATE_HZ * FRAME_MS // 1000
    frames = pcm[: len(pcm) // frame * frame].reshape(-1, frame)
    loudest = np.sort(np.argsort(-np.abs(frames.astype(np.int32)).sum(axis=1))[:N_FRAMES])
    return frames[loudest].reshape(-1)  # speech, not leading silence, in time order


SPEECH_8K = _speech_8k()


def speech_frames(rate_hz: int) -> list[bytes]:
    """The speech at ``rate_hz`` cut into 20 ms frames of int16 bytes."""
    pcm = (
        SPEECH_8K.tobytes()
        if rate_hz == LINE_RATE_HZ
        else Resampler(LINE_RATE_HZ, rate_hz).process(SPEECH_8K.tobytes())
    )
    size = 2 * rate_hz * FRAME_MS // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


def run(benchmark: BenchmarkFixture, step: Callable[[bytes], bytes], frames: list[bytes]) -> None:
    """Time ``step`` over the frames (cycled) and check the mean against the budget."""
    nxt = itertools.cycle(frames).__next__
    benchmark(lambda: step(nxt()))
    assert benchmark.stats is not None
    assert benchmark.stats.stats.mean < REALTIME_BUDGET_S


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    error = reference.astype(np.float64) - test
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum(error**2)))


def check_outbound(encode: Callable[[bytes], bytes], src_hz: int, delay_ms: float) -> None:
    """The encoder turns every 20 ms frame into 160 bytes that decode back near the 8 kHz source."""
    codes = b"".join(encode(f) for f in speech_frames(src_hz))
    assert len(codes) == len(SPEECH_8K)
    delay = round(delay_ms * LINE_RATE_HZ / 1000)
    decoded = np.frombuffer(ulaw_decode(codes), np.int16)[delay:]
    # mu-law alone is ~38 dB; the two 3.4 kHz filters add a little band-edge loss.
    assert snr_db(SPEECH_8K[: len(decoded)], decoded) > 25


# --- outbound: 16 kHz PCM (640 bytes) -> 8 kHz mu-law (160 bytes) -----------------------------


@pytest.mark.benchmark(group="outbound 16k pcm -> 8k ulaw")
def test_outbound_16k_ulaw_mediasrv(benchmark: BenchmarkFixture) -> None:
    encoder = UlawEncoder(16000)
    check_outbound(encoder.encode, 16000, 2 * encoder.delay_ms)
    encoder.reset()
    run(benchmark, encoder.encode, speech_frames(16000))
    benchmark.extra_info["target_us"] = OUTBOUND_TARGET_S * 1e6


@pytest.mark.benchmark(group="outbound 16k pcm -> 8k ulaw")
def test_outbound_16k_harness_only(benchmark: BenchmarkFixture) -> None:
    """The cost of the timing loop itself (cycling frames, one call); included in every row."""
    run(benchmark, bytes, speech_frames(16000))


@pytest.mark.benchmark(group="outbound 16k pcm -> 8k ulaw")
def test_outbound_16k_ulaw_audioop_ratecv(benchmark: BenchmarkFixture) -> None:
    state = None

    def step(frame: bytes) -> bytes:
        nonlocal state
        pcm8k, state = audioop.ratecv(frame, 2, 1, 16000, LINE_RATE_HZ, state)
        return audioop.lin2ulaw(pcm8k, 2)

    assert len(step(speech_frames(16000)[0])) == 160
    run(benchmark, step, speech_frames(16000))


@needs_soxr
@pytest.mark.benchmark(group="outbound 16k pcm -> 8k ulaw")
def test_outbound_16k_ulaw_soxr_pipecat(benchmark: BenchmarkFixture) -> None:
    stream = soxr.ResampleStream(16000, LINE_RATE_HZ, 1, dtype="int16")

    def step(frame: bytes) -> bytes:
        return audioop.lin2ulaw(stream.resample_chunk(np.frombuffer(frame, np.int16)).tobytes(), 2)

    first = [len(step(f)) for f in speech_frames(16000)[:10]]
    assert first[0] < 160 and sum(first) > 0  # soxr holds back the start of a stream
    run(benchmark, step, speech_frames(16000))


# --- outbound from the other TTS rates -------------------------------------------------------


@pytest.mark.benchmark(group="outbound 24k pcm -> 8k ulaw")
def test_outbound_24k_ulaw_mediasrv(benchmark: BenchmarkFixture) -> None:
    encoder = UlawEncoder(24000)
    check_outbound(encoder.encode, 24000, encoder.delay_ms + Resampler(8000, 24000).delay_ms)
    run(benchmark, encoder.encode, speech_frames(24000))


@pytest.mark.benchmark(group="outbound 24k pcm -> 8k ulaw")
def test_outbound_24k_ulaw_audioop_ratecv(benchmark: BenchmarkFixture) -> None:
    state = None

    def step(frame: bytes) -> bytes:
        nonlocal state
        pcm8k, state = audioop.ratecv(frame, 2, 1, 24000, LINE_RATE_HZ, state)
        return audioop.lin2ulaw(pcm8k, 2)

    assert len(step(speech_frames(24000)[0])) == 160
    run(benchmark, step, speech_frames(24000))


@needs_soxr
@pytest.mark.benchmark(group="outbound 24k pcm -> 8k ulaw")
def test_outbound_24k_ulaw_soxr_pipecat(benchmark: BenchmarkFixture) -> None:
    stream = soxr.ResampleStream(24000, LINE_RATE_HZ, 1, dtype="int16")

    def step(frame: bytes) -> bytes:
        return audioop.lin2ulaw(stream.resample_chunk(np.frombuffer(frame, np.int16)).tobytes(), 2)

    run(benchmark, step, speech_frames(24000))


@pytest.mark.benchmark(group="outbound 22.05k pcm -> 8k ulaw")
def test_outbound_22k_ulaw_mediasrv(benchmark: BenchmarkFixture) -> None:
    encoder = UlawEncoder(22050)
    check_outbound(encoder.encode, 22050, encoder.delay_ms + Resampler(8000, 22050).delay_ms)
    run(benchmark, encoder.encode, speech_frames(22050))


@needs_soxr
@pytest.mark.benchmark(group="outbound 22.05k pcm -> 8k ulaw")
def test_outbound_22k_ulaw_soxr_pipecat(benchmark: BenchmarkFixture) -> None:
    stream = soxr.ResampleStream(22050, LINE_RATE_HZ, 1, dtype="int16")

    def step(frame: bytes) -> bytes:
        return audioop.lin2ulaw(stream.resample_chunk(np.frombuffer(frame, np.int16)).tobytes(), 2)

    run(benchmark, step, speech_frames(22050))


@pytest.mark.benchmark(group="resample 24k -> 8k pcm")
def test_resample_24k_to_8k_mediasrv(benchmark: BenchmarkFixture) -> None:
    resampler = Resampler(24000, LINE_RATE_HZ)
    assert {len(resampler.process(f)) for f in speech_frames(24000)} == {320}
    run(benchmark, resampler.process, speech_frames(24000))


# --- inbound: G.711 decode / encode of one 160-byte frame ------------------------------------


@pytest.mark.benchmark(group="ulaw decode 160 B")
def test_ulaw_decode_mediasrv(benchmark: BenchmarkFixture) -> None:
    frames = [ulaw_encode(f) for f in speech_frames(LINE_RATE_HZ)]
    assert all(ulaw_decode(f) == audioop.ulaw2lin(f, 2) for f in frames)
    run(benchmark, ulaw_decode, frames)


@pytest.mark.benchmark(group="ulaw decode 160 B")
def test_ulaw_decode_audioop(benchmark: BenchmarkFixture) -> None:
    frames = [ulaw_encode(f) for f in speech_frames(LINE_RATE_HZ)]
    run(benchmark, lambda f: audioop.ulaw2lin(f, 2), frames)


@pytest.mark.benchmark(group="ulaw encode 160 samples")
def test_ulaw_encode_mediasrv(benchmark: BenchmarkFixture) -> None:
    frames = speech_frames(LINE_RATE_HZ)
    assert all(ulaw_encode(f) == audioop.lin2ulaw(f, 2) for f in frames)
    run(benchmark, ulaw_encode, frames)


@pytest.mark.benchmark(group="ulaw encode 160 samples")
def test_ulaw_encode_audioop(benchmark: BenchmarkFixture) -> None:
    run(benchmark, lambda f: audioop.lin2ulaw(f, 2), speech_frames(LINE_RATE_HZ))


# --- inbound: 8 kHz -> 16 kHz PCM for a 16 kHz consumer ----------------------------------------


@pytest.mark.benchmark(group="resample 8k -> 16k pcm")
def test_upsample_8k_to_16k_mediasrv(benchmark: BenchmarkFixture) -> None:
    resampler = Resampler(LINE_RATE_HZ, 16000)
    up = b"".join(resampler.process(f) for f in speech_frames(LINE_RATE_HZ))
    assert len(up) == 4 * len(SPEECH_8K)
    # Every other output sample is the input itself, delayed (a half-band interpolator).
    delay = round(resampler.delay_ms * 16000 / 1000)
    evens = np.frombuffer(up, np.int16)[delay::2]
    assert np.array_equal(SPEECH_8K[: len(evens)], evens)
    resampler.reset()
    run(benchmark, resampler.process, speech_frames(LINE_RATE_HZ))


@pytest.mark.benchmark(group="resample 8k -> 16k pcm")
def test_upsample_8k_to_16k_audioop_ratecv(benchmark: BenchmarkFixture) -> None:
    state = None

    def step(frame: bytes) -> bytes:
        nonlocal state
        pcm16k, state = audioop.ratecv(frame, 2, 1, LINE_RATE_HZ, 16000, state)
        return pcm16k

    run(benchmark, step, speech_frames(LINE_RATE_HZ))


@needs_soxr
@pytest.mark.benchmark(group="resample 8k -> 16k pcm")
def test_upsample_8k_to_16k_soxr(benchmark: BenchmarkFixture) -> None:
    stream = soxr.ResampleStream(LINE_RATE_HZ, 16000, 1, dtype="int16")
    run(
        benchmark,
        lambda f: stream.resample_chunk(np.frombuffer(f, np.int16)).tobytes(),
        speech_frames(LINE_RATE_HZ),
    )
