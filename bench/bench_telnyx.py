"""Telnyx media-frame hot paths: inbound JSON text -> int16 PCM, outbound mu-law -> JSON text.

Run: ``pytest bench/bench_telnyx.py -o python_files='bench_*.py' --benchmark-only``.

Each benchmark first checks its result against an independent reference, then times it,
then checks the mean against the real-time budget (2 % of one 20 ms frame). Inputs are
real speech from the dev corpus, mu-law encoded, one frame per round (cycled), not zeros.
Baselines: the stdlib path pipecat's serializer takes (``json`` + ``base64`` + ``audioop``)
and msgspec + ``audioop``.
"""

from __future__ import annotations

import base64
import itertools
import json
import warnings
import wave
from collections.abc import Callable, Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from mediasrv.codec import ulaw_decode, ulaw_encode
from mediasrv.corpus import dev_corpus
from mediasrv.providers.telnyx import MediaReceived, TelnyxStream
from mediasrv.providers.telnyx import messages as m

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

CORPUS_WAV = dev_corpus() / "dev002.wav"
FRAME_BYTES = 160
FRAME_S = 0.020
REALTIME_BUDGET_S = 0.02 * FRAME_S  # 2 % of a frame: 400 us
N_FRAMES = 64
STREAM_ID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"


def _speech_frames() -> list[bytes]:
    with wave.open(str(CORPUS_WAV), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        pcm = wav.readframes(wav.getnframes())
    ulaw = ulaw_encode(pcm)
    # the loudest frames: speech, not leading silence
    frames = [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw) - FRAME_BYTES + 1, FRAME_BYTES)]
    frames.sort(key=lambda f: -sum(abs(s) for s in memoryview(ulaw_decode(f)).cast("h")))
    return frames[:N_FRAMES]


FRAMES = _speech_frames()


def _media_json(i: int, payload: bytes) -> str:
    # the shape Telnyx sends (docs/providers.md 2.1), string counters included
    return json.dumps(
        {
            "event": "media",
            "sequence_number": str(i + 4),
            "media": {
                "track": "inbound",
                "chunk": str(i + 2),
                "timestamp": str(20 * (i + 1)),
                "payload": base64.b64encode(payload).decode(),
            },
            "stream_id": STREAM_ID,
        }
    )


TEXTS = [_media_json(i, f) for i, f in enumerate(FRAMES)]
EXPECTED_PCM = [audioop.ulaw2lin(f, 2) for f in FRAMES]


def _check_budget(benchmark: BenchmarkFixture) -> None:
    assert benchmark.stats is not None
    mean_s = benchmark.stats.stats.mean
    assert mean_s < REALTIME_BUDGET_S, mean_s


# --------------------------------------------------------------------------- inbound


def inbound_ours(text: str) -> bytes:
    """msgspec payload-only Struct (base64 decoded by msgspec) + the codec's numpy LUT."""
    return ulaw_decode(m.decode_media_payload(text))


def inbound_stdlib(text: str) -> bytes:
    """What pipecat's serializer does: json.loads, index dicts, b64decode, audioop."""
    message = json.loads(text)
    return audioop.ulaw2lin(base64.b64decode(message["media"]["payload"]), 2)


def inbound_msgspec_audioop(text: str) -> bytes:
    return audioop.ulaw2lin(m.decode_media_payload(text), 2)


_STREAM = TelnyxStream()


def inbound_full_core(text: str) -> bytes:
    """The daemon's real path: TelnyxStream (full tagged-union decode, counters) + codec."""
    _STREAM.receive_text(text, 0.0)
    (event,) = _STREAM.events_received()
    assert isinstance(event, MediaReceived)
    return ulaw_decode(event.payload)


# A no-numpy candidate for the codec: the 256-entry int16 LUT split into low/high byte tables,
# applied with two bytes.translate calls and interleaved by strided slice assignment.
_LUT_LO = bytes(s & 0xFF for s in memoryview(ulaw_decode(bytes(range(256)))).cast("h"))
_LUT_HI = bytes((s >> 8) & 0xFF for s in memoryview(ulaw_decode(bytes(range(256)))).cast("h"))


def inbound_translate_lut(text: str) -> bytes:
    payload = m.decode_media_payload(text)
    pcm = bytearray(2 * len(payload))
    pcm[0::2] = payload.translate(_LUT_LO)
    pcm[1::2] = payload.translate(_LUT_HI)
    return bytes(pcm)


INBOUND: dict[str, Callable[[str], bytes]] = {
    "ours_payload_fast_path": inbound_ours,
    "ours_payload_translate_lut": inbound_translate_lut,
    "ours_full_TelnyxStream": inbound_full_core,
    "baseline_msgspec_audioop": inbound_msgspec_audioop,
    "baseline_stdlib_json_b64_audioop": inbound_stdlib,
}


@pytest.mark.benchmark(group="telnyx-inbound media JSON -> int16 PCM")
@pytest.mark.parametrize("name", list(INBOUND))
def test_inbound(benchmark: BenchmarkFixture, name: str) -> None:
    decode = INBOUND[name]
    for text, pcm in zip(TEXTS, EXPECTED_PCM, strict=True):
        assert decode(text) == pcm
    texts: Iterator[str] = itertools.cycle(TEXTS)
    benchmark(lambda: decode(next(texts)))
    _check_budget(benchmark)


@pytest.mark.benchmark(group="telnyx-inbound media JSON -> mu-law payload bytes")
@pytest.mark.parametrize("name", ["ours_decode_media_payload", "baseline_stdlib_json_b64"])
def test_inbound_payload_only(benchmark: BenchmarkFixture, name: str) -> None:
    def stdlib(text: str) -> bytes:
        return base64.b64decode(json.loads(text)["media"]["payload"])

    extract = m.decode_media_payload if name.startswith("ours") else stdlib
    for text, frame in zip(TEXTS, FRAMES, strict=True):
        assert extract(text) == frame
    texts: Iterator[str] = itertools.cycle(TEXTS)
    benchmark(lambda: extract(next(texts)))
    _check_budget(benchmark)


# --------------------------------------------------------------------------- outbound


def outbound_ours(ulaw: bytes) -> str:
    return m.media_text(ulaw)


_OUT_STREAM = TelnyxStream()


def outbound_stream(ulaw: bytes) -> str:
    return _OUT_STREAM.send_media(ulaw)


def outbound_struct(ulaw: bytes) -> str:
    return m.WIRE_ENCODER.encode(m.MediaOut(media=m.MediaOutBody(payload=ulaw))).decode()


def outbound_json_dumps(ulaw: bytes) -> str:
    """A dict and json.dumps per frame, as pipecat's serializer does."""
    return json.dumps({"event": "media", "media": {"payload": base64.b64encode(ulaw).decode("utf-8")}})


OUTBOUND: dict[str, Callable[[bytes], str]] = {
    "ours_media_text": outbound_ours,
    "ours_TelnyxStream_send_media": outbound_stream,
    "msgspec_struct_encode": outbound_struct,
    "baseline_json_dumps_dict": outbound_json_dumps,
}


@pytest.mark.benchmark(group="telnyx-outbound 160 B mu-law -> JSON text")
@pytest.mark.parametrize("name", list(OUTBOUND))
def test_outbound(benchmark: BenchmarkFixture, name: str) -> None:
    encode = OUTBOUND[name]
    for frame in FRAMES:
        text = encode(frame)
        assert json.loads(text) == {"event": "media", "media": {"payload": base64.b64encode(frame).decode()}}
        decoded = m.OUTBOUND_DECODER.decode(text)
        assert isinstance(decoded, m.MediaOut)
        assert decoded.media.payload == frame
    frames: Iterator[bytes] = itertools.cycle(FRAMES)
    benchmark(lambda: encode(next(frames)))
    _check_budget(benchmark)
