"""ElevenLabs audio frames: client-side cost of one server message (P15).

Inputs are what the emulator sends for a real sentence (its synthetic voice, not zeros):
200 ms of audio per message, as base64 in JSON, with and without ``sync_alignment``.

* parse only: ``decode_server_message`` (JSON + base64 into bytes, one msgspec pass);
* full core path: ``ElevenLabsStream.receive_message`` + ``events_received`` (parse, context
  lookup, alignment bookkeeping, mu-law out) for ``ulaw_8000`` (passthrough) and
  ``pcm_16000`` (resample 16 -> 8 kHz + mu-law encode, in 20 ms frames).

Budget: a 200 ms message must cost well under 1 % of its audio time (2 ms); the assertions
use that bound.
"""

from __future__ import annotations

import msgspec

from mediasrv.codec import ulaw_encode
from mediasrv.lab.emulators.voice import char_durations_ms, render_pcm
from mediasrv.providers.elevenlabs import AudioChunk, ElevenLabsStream
from mediasrv.providers.elevenlabs.messages import AlignmentOut, ServerAudioOut, decode_server_message, encode

TEXT = "Your appointment is on Tuesday at three in the afternoon. "
CHUNK_MS = 200
BUDGET_S = 0.01 * CHUNK_MS / 1000


def _alignment(ms: int) -> AlignmentOut:
    chars: list[str] = []
    starts: list[float] = []
    durations: list[float] = []
    t = 0
    for ch, d in zip(TEXT, char_durations_ms(TEXT), strict=True):
        if t >= ms:
            break
        chars.append(ch)
        starts.append(t)
        durations.append(d)
        t += d
    return AlignmentOut(chars=chars, charStartTimesMs=starts, charDurationsMs=durations)


PCM8 = render_pcm(TEXT, 8000)[: 8 * CHUNK_MS].tobytes()
PCM16 = render_pcm(TEXT, 16000)[: 16 * CHUNK_MS].tobytes()
ULAW = ulaw_encode(PCM8)
FRAME_ULAW = encode(ServerAudioOut(audio=ULAW, contextId="ctx1"))
FRAME_ULAW_ALIGNED = encode(
    ServerAudioOut(
        audio=ULAW, contextId="ctx1", alignment=_alignment(CHUNK_MS), normalizedAlignment=_alignment(CHUNK_MS)
    )
)
FRAME_PCM16 = encode(ServerAudioOut(audio=PCM16, contextId="ctx1"))


def _open(output_format: str) -> ElevenLabsStream:
    core = ElevenLabsStream(output_format)
    ctx = core.new_context("ctx1")
    core.send_text(ctx, TEXT * 1000, 0.0)  # long enough that alignment never runs out of text
    core.data_to_send()
    return core


def _receive(core: ElevenLabsStream, frame: bytes) -> list[object]:
    core.receive_message(frame, 1.0)
    return list(core.events_received())


def test_parse_audio_frame_ulaw(benchmark):
    message = decode_server_message(FRAME_ULAW)
    assert message.audio == ULAW and message.ctx == "ctx1" and len(FRAME_ULAW) > 2100
    benchmark(decode_server_message, FRAME_ULAW)
    assert benchmark.stats.stats.mean < BUDGET_S


def test_parse_audio_frame_ulaw_with_alignment(benchmark):
    message = decode_server_message(FRAME_ULAW_ALIGNED)
    assert message.alignment is not None and "".join(message.alignment.chars) == "Your"
    benchmark(decode_server_message, FRAME_ULAW_ALIGNED)
    assert benchmark.stats.stats.mean < BUDGET_S


def test_core_receive_ulaw_with_alignment(benchmark):
    core = _open("ulaw_8000")
    (chunk,) = _receive(core, FRAME_ULAW_ALIGNED)
    assert isinstance(chunk, AudioChunk) and chunk.ulaw == ULAW and chunk.audio_ms == CHUNK_MS
    benchmark(_receive, core, FRAME_ULAW_ALIGNED)
    assert benchmark.stats.stats.mean < BUDGET_S


def test_core_receive_pcm16000_to_mulaw(benchmark):
    core = _open("pcm_16000")
    (chunk,) = _receive(core, FRAME_PCM16)
    assert isinstance(chunk, AudioChunk)
    assert len(chunk.ulaw) == 8 * CHUNK_MS - 12  # the resampler's 1.5 ms delay is trimmed once
    (chunk,) = _receive(core, FRAME_PCM16)
    assert isinstance(chunk, AudioChunk) and len(chunk.ulaw) == 8 * CHUNK_MS
    benchmark(_receive, core, FRAME_PCM16)
    assert benchmark.stats.stats.mean < BUDGET_S


def test_json_stdlib_baseline(benchmark):
    """Baseline: stdlib json + base64, the way pipecat/livekit read the same frame."""
    import base64
    import json

    def parse(frame: bytes) -> bytes:
        return base64.b64decode(json.loads(frame)["audio"])

    assert parse(FRAME_ULAW_ALIGNED) == ULAW
    benchmark(parse, FRAME_ULAW_ALIGNED)
    assert msgspec.json.decode(FRAME_ULAW_ALIGNED)["contextId"] == "ctx1"
