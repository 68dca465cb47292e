"""ElevenLabsStream core: fed recorded-shape server frames and fake ``now`` values (no loop, no sockets).

Grouped by docs/providers.md section: 4.2 messages and contexts, 4.1/4.3 output formats, 6 resume.
"""

from __future__ import annotations

import base64

import msgspec
import numpy as np
import pytest

from mediasrv.errors import ConfigError, LocalProtocolError
from mediasrv.providers.elevenlabs import (
    AudioChunk,
    ContextDone,
    ContextState,
    ElevenLabsStream,
    TtsError,
    VoiceSettings,
)


def audio_frame(context_id: str | None, audio: bytes, *, key: str = "contextId", **extra: object) -> bytes:
    body: dict[str, object] = {"audio": base64.b64encode(audio).decode()}
    if context_id is not None:
        body[key] = context_id
    body.update(extra)
    return msgspec.json.encode(body)


def final_frame(context_id: str, *, key: str = "isFinal") -> bytes:
    return msgspec.json.encode({key: True, "contextId": context_id})


def alignment(text: str, ms_per_char: int = 60, durations_key: str = "charDurationsMs") -> dict[str, object]:
    return {
        "chars": list(text),
        "charStartTimesMs": [i * ms_per_char for i in range(len(text))],
        durations_key: [ms_per_char] * len(text),
    }


def sent(core: ElevenLabsStream) -> list[dict[str, object]]:
    return [msgspec.json.decode(frame) for frame in core.data_to_send()]


def speech_pcm(rate_hz: int, ms: int) -> bytes:
    t = np.arange(rate_hz * ms // 1000) / rate_hz
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


# --------------------------------------------------------------------------- 4.2 client messages


def test_init_is_lazy_and_carries_voice_settings() -> None:
    core = ElevenLabsStream(voice_settings=VoiceSettings(stability=0.4, speed=1.1))
    ctx = core.new_context()
    assert core.data_to_send() == []
    core.send_text(ctx, "Hello there, ", 1.0, flush=True)
    assert sent(core) == [
        {"text": " ", "context_id": ctx, "voice_settings": {"stability": 0.4, "speed": 1.1}},
        {"text": "Hello there, ", "context_id": ctx, "flush": True},
    ]


def test_end_sends_end_of_input_flush_then_close_context() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("r1")
    core.send_text(ctx, "Bye. ", 0.0)
    core.data_to_send()
    core.end(ctx, 0.1)
    assert sent(core) == [
        {"text": "", "context_id": "r1", "flush": True},
        {"context_id": "r1", "close_context": True},
    ]
    assert core.stats(ctx).state is ContextState.CLOSING


def test_end_without_text_is_done_at_once_and_sends_nothing() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context()
    core.end(ctx, 0.0)
    assert core.data_to_send() == []
    assert core.events_received() == [ContextDone(context_id=ctx)]


def test_keepalive_per_open_context_and_on_idle_socket() -> None:
    core = ElevenLabsStream(keepalive_interval_s=10.0)
    core.connection_made(0.0)
    assert core.next_deadline() == 10.0
    core.handle_timer(10.0)
    assert sent(core) == [{"text": ""}]
    ctx = core.new_context()
    core.send_text(ctx, "Hi ", 12.0)
    core.data_to_send()
    assert core.next_deadline() == 22.0
    core.handle_timer(21.0)
    assert core.data_to_send() == []
    core.handle_timer(22.0)
    assert sent(core) == [{"text": "", "context_id": ctx}]


# --------------------------------------------------------------------------- 4.2 server messages


@pytest.mark.parametrize(
    ("ctx_key", "final_key", "durations_key"),
    [("contextId", "isFinal", "charDurationsMs"), ("context_id", "is_final", "charsDurationsMs")],
)
def test_server_messages_parse_under_both_spellings(ctx_key: str, final_key: str, durations_key: str) -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("c1")
    core.send_text(ctx, "Hi you ", 0.0)
    core.end(ctx, 0.0)
    core.receive_message(
        audio_frame("c1", b"\x7f" * 160, key=ctx_key, alignment=alignment("Hi ", 20, durations_key)), 0.2
    )
    core.receive_message(msgspec.json.encode({final_key: True, ctx_key: "c1"}), 0.3)
    events = core.events_received()
    assert events == [
        AudioChunk(context_id="c1", ulaw=b"\x7f" * 160, audio_ms=20.0, first=True),
        ContextDone(context_id="c1"),
    ]
    assert core.stats(ctx).chars_voiced == 3


# Gap 6 of issue 12: the SDK types every alignment list Optional; a null list used to fail
# decoding and drop that chunk's audio.
@pytest.mark.parametrize(
    ("alignment_json", "voiced"),
    [
        ({"chars": None, "charStartTimesMs": None, "charDurationsMs": None}, 0),
        ({"chars": ["H", "i"], "charStartTimesMs": None, "charDurationsMs": None}, 2),
        ({"chars": None}, 0),
        ({}, 0),
        (None, 0),
    ],
)
def test_alignment_with_null_lists_still_delivers_the_audio(alignment_json: object, voiced: int) -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("c1")
    core.send_text(ctx, "Hi ", 0.0)
    frame = audio_frame("c1", b"\x7f" * 160, alignment=alignment_json, normalizedAlignment=alignment_json)
    core.receive_message(frame, 0.2)
    assert core.events_received() == [
        AudioChunk(context_id="c1", ulaw=b"\x7f" * 160, audio_ms=20.0, first=True)
    ]
    assert core.protocol_errors == 0
    assert core.stats(ctx).chars_voiced == voiced


def test_every_server_field_may_be_null() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("c1")
    core.send_text(ctx, "Hi ", 0.0)
    core.end(ctx, 0.0)
    core.receive_message(
        b'{"audio":null,"isFinal":null,"contextId":"c1","alignment":null,"normalizedAlignment":null,'
        b'"error":null,"message":null,"code":null}',
        0.1,
    )
    assert core.events_received() == []
    core.receive_message(b'{"audio":"","isFinal":true,"is_final":null,"contextId":"c1"}', 0.2)
    assert core.events_received() == [ContextDone(context_id="c1")]
    assert core.protocol_errors == 0


def test_error_frame_becomes_event_for_its_context() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("c1")
    core.send_text(ctx, "Hi ", 0.0)
    core.receive_message(
        b'{"error":"max_active_conversations","message":"too many","code":1008,"contextId":"c1"}', 0.1
    )
    assert core.events_received() == [
        TtsError(context_id="c1", error="max_active_conversations", message="too many", code=1008)
    ]


def test_malformed_frame_is_recorded_not_raised() -> None:
    core = ElevenLabsStream()
    core.receive_message(b'{"audio": "not base64 !!", "contextId": "x"}', 0.0)
    core.receive_message(b"{nope", 0.0)
    events = core.events_received()
    assert [type(e) for e in events] == [TtsError, TtsError]
    assert core.protocol_errors == 2
    assert core.last_protocol_error is not None


# --------------------------------------------------------------------------- 4.2 contexts


def test_never_more_than_five_active_contexts() -> None:
    core = ElevenLabsStream()
    ids = [core.new_context() for _ in range(6)]  # naming is free: nothing sent yet
    for ctx in ids[:5]:
        core.send_text(ctx, "Hi ", 0.0)
    assert core.active_contexts() == 5
    frames_before = len(core.data_to_send())
    with pytest.raises(LocalProtocolError, match="max_active_conversations"):
        core.send_text(ids[5], "Hi ", 0.0)
    assert core.data_to_send() == [] and frames_before == 10
    core.close_context(ids[0], 0.1)  # barge-in frees the slot at once
    core.send_text(ids[5], "Hi ", 0.2)
    assert core.active_contexts() == 5


def test_closing_context_keeps_its_slot_until_is_final() -> None:
    core = ElevenLabsStream()
    ids = [core.new_context() for _ in range(6)]
    for ctx in ids[:5]:
        core.send_text(ctx, "Hi ", 0.0)
    core.end(ids[0], 0.1)
    with pytest.raises(LocalProtocolError):
        core.send_text(ids[5], "Hi ", 0.2)
    core.receive_message(final_frame(ids[0]), 0.3)
    core.send_text(ids[5], "Hi ", 0.4)
    assert core.active_contexts() == 5


def test_frames_of_a_closed_context_are_dropped_and_counted() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context()
    core.send_text(ctx, "A long reply ", 0.0)
    core.receive_message(audio_frame(ctx, b"\x01" * 800), 0.2)
    core.close_context(ctx, 0.3)
    core.close_context(ctx, 0.3)  # idempotent
    assert sent(core)[-1] == {"context_id": ctx, "close_context": True}
    core.receive_message(audio_frame(ctx, b"\x02" * 800), 0.35)
    core.receive_message(audio_frame("never-opened", b"\x02" * 80), 0.35)
    core.receive_message(final_frame(ctx), 0.4)
    events = core.events_received()
    assert [type(e) for e in events] == [AudioChunk, ContextDone]
    assert events[1] == ContextDone(context_id=ctx, cancelled=True)
    assert core.dropped_frames == 2
    assert core.stats(ctx).dropped_frames == 1


def test_context_id_reusable_after_close() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("turn")
    with pytest.raises(LocalProtocolError):
        core.new_context("turn")
    core.close_context(ctx, 0.0)
    assert core.new_context("turn") == "turn"


# --------------------------------------------------------------------------- 4.1/4.3 output formats


def test_ulaw_8000_passes_through_untouched() -> None:
    core = ElevenLabsStream("ulaw_8000")
    ctx = core.new_context()
    core.send_text(ctx, "Hi ", 0.0)
    payload = bytes(range(256)) * 4
    core.receive_message(audio_frame(ctx, payload), 0.1)
    (chunk,) = core.events_received()
    assert isinstance(chunk, AudioChunk)
    assert chunk.ulaw == payload and chunk.audio_ms == len(payload) / 8


@pytest.mark.parametrize(
    ("fmt", "rate_hz"), [("pcm_16000", 16000), ("pcm_22050", 22050), ("pcm_24000", 24000)]
)
def test_pcm_becomes_mulaw_of_the_same_duration(fmt: str, rate_hz: int) -> None:
    core = ElevenLabsStream(fmt)
    ctx = core.new_context()
    core.send_text(ctx, "Hi ", 0.0)
    core.end(ctx, 0.0)
    pcm = speech_pcm(rate_hz, 100)
    for start in range(0, len(pcm), 1002):  # uneven chunks, one of odd length
        core.receive_message(audio_frame(ctx, pcm[start : start + 1002]), 0.1)
    core.receive_message(final_frame(ctx), 0.2)
    events = core.events_received()
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert sum(len(c.ulaw) for c in chunks) == 800  # 100 ms at 8 kHz, after the flush
    assert chunks[0].first and not any(c.first for c in chunks[1:])
    assert events[-1] == ContextDone(context_id=ctx)
    assert core.stats(ctx).audio_ms_received == pytest.approx(100.0)


def test_unsupported_output_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="output_format"):
        ElevenLabsStream("mp3_44100_128")


# --------------------------------------------------------------------------- TTFB and accounting


def test_ttfb_is_first_audio_minus_first_text() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context()
    core.send_text(ctx, " ", 4.9)  # blank text does not start the clock
    core.send_text(ctx, "Hello ", 5.0)
    core.send_text(ctx, "world. ", 5.3)
    assert core.stats(ctx).ttfb_ms is None
    core.receive_message(audio_frame(ctx, b"\xff" * 160), 5.18)
    core.receive_message(audio_frame(ctx, b"\xff" * 160), 5.5)
    stats = core.stats(ctx)
    assert stats.ttfb_ms == pytest.approx(180.0)
    assert stats.text_chars_sent == len(" Hello world. ")
    assert stats.audio_ms_delivered == 40.0


# --------------------------------------------------------------------------- 6 resume after a drop


def test_resume_with_alignment_restarts_at_the_current_word() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("r")
    core.send_text(ctx, "Hello there, ", 0.0, flush=True)
    core.send_text(ctx, "how are you", 0.1)
    core.data_to_send()
    # 8 characters voiced ("Hello th"), 60 ms each: the word "there" is 2 chars (120 ms) in.
    core.receive_message(audio_frame("r", b"\x55" * 8 * 480, alignment=alignment("Hello th")), 0.3)
    core.connection_lost()
    core.receive_message(audio_frame("r", b"\x55" * 80), 0.35)  # a stale frame is dropped
    core.connection_made(0.5)
    assert sent(core) == [
        {"text": " ", "context_id": "r~1"},
        {"text": "there, ", "context_id": "r~1", "flush": True},
        {"text": "how are you", "context_id": "r~1"},
    ]
    core.events_received()
    core.receive_message(audio_frame("r~1", b"\x66" * 8 * 200, alignment=alignment("there", 40)), 0.7)
    (chunk,) = core.events_received()
    assert chunk == AudioChunk(context_id="r", ulaw=b"\x66" * 8 * 80, audio_ms=80.0, first=False)
    assert core.stats(ctx).resumes == 1
    assert core.stats(ctx).chars_voiced == len("Hello there")


def test_resume_without_alignment_resends_all_and_skips_delivered_audio() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("r")
    core.send_text(ctx, "One two three. ", 0.0, flush=True)
    core.end(ctx, 0.1)
    core.data_to_send()
    core.receive_message(audio_frame("r", b"\x11" * 800), 0.3)
    core.connection_lost()
    core.send_text(core.new_context("later"), "Next. ", 0.4)  # opened while down: sent on resume
    core.connection_made(0.5)
    frames = sent(core)
    assert frames[:4] == [
        {"text": " ", "context_id": "r~1"},
        {"text": "One two three. ", "context_id": "r~1", "flush": True},
        {"text": "", "context_id": "r~1", "flush": True},
        {"context_id": "r~1", "close_context": True},
    ]
    assert {"text": "Next. ", "context_id": "later~1"} in frames
    core.events_received()
    core.receive_message(audio_frame("r~1", b"\x22" * 1000), 0.7)
    core.receive_message(final_frame("r~1"), 0.8)
    events = core.events_received()
    assert events == [
        AudioChunk(context_id="r", ulaw=b"\x22" * 200, audio_ms=25.0, first=False),
        ContextDone(context_id="r"),
    ]


def test_resume_of_a_fully_voiced_ended_reply_just_finishes_it() -> None:
    core = ElevenLabsStream()
    ctx = core.new_context("r")
    core.send_text(ctx, "Hi. ", 0.0)
    core.end(ctx, 0.0)
    core.receive_message(audio_frame("r", b"\x11" * 160, alignment=alignment("Hi. ")), 0.2)
    core.connection_lost()
    core.connection_made(0.3)
    assert core.data_to_send() == []
    assert core.events_received()[-1] == ContextDone(context_id="r")


def test_fail_unfinished_reports_each_reply() -> None:
    core = ElevenLabsStream()
    a, b = core.new_context(), core.new_context()
    core.send_text(a, "Hi ", 0.0)
    core.send_text(b, "Yo ", 0.0)
    core.close_context(b, 0.1)
    core.events_received()
    core.fail_unfinished("reconnect_failed", "down")
    assert core.events_received() == [
        TtsError(context_id=a, error="reconnect_failed", message="down"),
        ContextDone(context_id=a, cancelled=True),
    ]
    assert core.unfinished() == []
