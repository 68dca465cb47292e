"""ElevenLabs multi-context TTS: our wire against the ``elevenlabs`` SDK's own types (issue 12).

* Every frame mediasrv sends (the :class:`~mediasrv.providers.elevenlabs.stream.ElevenLabsStream`
  core is what the client writes, byte for byte) is accepted by the SDK's request model for it,
  ``InitializeConnectionMulti``, ``SendTextMulti``, ``FlushContext``, ``CloseContext``,
  ``KeepContextAlive`` or ``CloseSocket``, with no field the model does not know.
* Every server message the SDK's response models (``AudioOutputMulti``, ``FinalOutputMulti``,
  ``WebsocketTtsServerMessageMulti``) can build, with optional fields absent, null and present,
  is decoded: audio delivered, finals honoured, no protocol error.
* Error frames have no SDK type: the frame the service sent for a sixth context, as recorded in
  livekit/agents-js issue #1985, stands in.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from elevenlabs.types import (
    AudioOutputMulti,
    CloseContext,
    CloseSocket,
    FinalOutputMulti,
    FlushContext,
    InitializeConnectionMulti,
    KeepContextAlive,
    RealtimeVoiceSettings,
    SendTextMulti,
    WebsocketTtsServerMessageMulti,
)
from elevenlabs.types import (
    GenerationConfig as SdkGenerationConfig,
)
from pydantic import BaseModel

from mediasrv.providers.elevenlabs import AudioChunk, ContextDone, ElevenLabsStream, TtsError
from mediasrv.providers.elevenlabs.messages import GenerationConfig, VoiceSettings
from tests.contract.sdk_check import assert_model_accepts, sdk_variants

ULAW = bytes((i * 7) % 256 for i in range(160))


def sdk_model_for(frame: dict[str, Any], opened: set[str]) -> type[BaseModel]:
    """The SDK request model this frame is meant as (by its keys, as the service reads them)."""
    ctx = frame.get("context_id")
    if "close_socket" in frame:
        return CloseSocket
    if "close_context" in frame:
        return CloseContext
    if frame.get("text") == " " and ctx is not None and ctx not in opened:
        opened.add(ctx)
        return InitializeConnectionMulti
    if set(frame) == {"context_id", "flush"}:
        return FlushContext
    if frame.get("text") == "" and ctx is not None and set(frame) == {"text", "context_id"}:
        return KeepContextAlive
    return SendTextMulti


def everything_we_send() -> list[dict[str, Any]]:
    """Drive the core through every kind of frame it writes."""
    core = ElevenLabsStream(
        "ulaw_8000",
        voice_settings=VoiceSettings(
            stability=0.4, similarity_boost=0.8, style=0.1, use_speaker_boost=True, speed=1.15
        ),
        generation_config=GenerationConfig(chunk_length_schedule=(50, 90, 120)),
        keepalive_interval_s=5.0,
        xi_api_key="k",
    )
    frames: list[bytes] = []
    core.handle_timer(6.0)  # idle socket, no context: socket keepalive
    frames += core.data_to_send()
    a = core.new_context()
    core.send_text(a, "Sure, ", 10.0, flush=True)  # init + text + flush
    core.send_text(a, "your balance is ", 10.1)
    core.flush(a, 10.2)
    core.handle_timer(20.0)  # context keepalive
    frames += core.data_to_send()
    core.end(a, 20.5)  # end-of-input flush + close_context
    b = core.new_context()
    core.send_text(b, "Hold on ", 21.0)
    core.close_context(b, 21.5)  # barge-in
    c = core.new_context()
    core.send_text(c, "Resumed after a drop. ", 22.0, flush=True)
    frames += core.data_to_send()
    core.connection_lost()
    core.connection_made(23.0)  # c resumes under a new wire id
    core.close_socket()
    frames += core.data_to_send()
    return [json.loads(f) for f in frames]


def test_every_frame_we_send_is_an_sdk_request_model() -> None:
    frames = everything_we_send()
    opened: set[str] = set()
    kinds = []
    for frame in frames:
        model = sdk_model_for(frame, opened)
        assert_model_accepts(model, frame)
        kinds.append(model.__name__)
    # every kind of frame was exercised, the init with the agent's speed in its voice settings
    assert set(kinds) == {
        "InitializeConnectionMulti",
        "SendTextMulti",
        "FlushContext",
        "CloseContext",
        "KeepContextAlive",
        "CloseSocket",
    }
    inits = [f for f in frames if sdk_model_for(f, set()) is InitializeConnectionMulti]
    assert len(inits) == 5  # a, b, c; then a (still closing) and c again after the drop
    init = InitializeConnectionMulti.model_validate(inits[0])
    assert isinstance(init.voice_settings, RealtimeVoiceSettings) and init.voice_settings.speed == 1.15
    assert isinstance(init.generation_config, SdkGenerationConfig)


def test_the_default_client_frames_too() -> None:
    """Without voice settings or a key in the frames (the usual, header-authenticated client)."""
    core = ElevenLabsStream()
    ctx = core.new_context()
    core.send_text(ctx, "Hi. ", 0.0, flush=True)
    core.end(ctx, 0.1)
    opened: set[str] = set()
    for frame in map(json.loads, core.data_to_send()):
        assert_model_accepts(sdk_model_for(frame, opened), frame)


# --------------------------------------------------------------------------- what we receive


def started(ctx: str = "c1") -> ElevenLabsStream:
    core = ElevenLabsStream()
    core.new_context(ctx)
    core.send_text(ctx, "Hi there. ", 0.0)
    core.events_received()
    return core


AUDIO = {"audio": base64.b64encode(ULAW).decode(), "contextId": "c1"}


@pytest.mark.parametrize(("variant", "message"), list(sdk_variants(AudioOutputMulti, AUDIO)))
def test_audio_output_multi_in_every_shape(variant: str, message: dict[str, Any]) -> None:
    core = started()
    core.receive_message(json.dumps(message), 0.5)
    assert core.events_received() == [AudioChunk(context_id="c1", ulaw=ULAW, audio_ms=20.0, first=True)]
    assert core.protocol_errors == 0, variant


@pytest.mark.parametrize(("variant", "message"), list(sdk_variants(FinalOutputMulti, {"contextId": "c1"})))
def test_final_output_multi_in_every_shape(variant: str, message: dict[str, Any]) -> None:
    core = started()
    core.receive_message(json.dumps(message), 0.5)
    assert core.events_received() == [ContextDone(context_id="c1")], variant
    assert core.protocol_errors == 0


@pytest.mark.parametrize(
    ("variant", "message"), list(sdk_variants(WebsocketTtsServerMessageMulti, {"contextId": "c1"}))
)
def test_the_general_server_message_in_every_shape(variant: str, message: dict[str, Any]) -> None:
    # This model spells the final flag is_final (the others isFinal); audio is optional here.
    if variant == "full":
        message["audio"] = AUDIO["audio"]
    core = started()
    core.receive_message(json.dumps(message), 0.5)
    events = core.events_received()
    assert core.protocol_errors == 0, variant
    if variant == "full":
        assert events == [
            AudioChunk(context_id="c1", ulaw=ULAW, audio_ms=20.0, first=True),
            ContextDone(context_id="c1"),
        ]
    else:
        assert events == []


def test_audio_for_no_context_is_dropped_not_an_error() -> None:
    for _, message in sdk_variants(AudioOutputMulti, {"audio": AUDIO["audio"]}):
        core = started()
        if message.get("contextId") is None:
            core.receive_message(json.dumps(message), 0.5)
            assert core.events_received() == [] and core.protocol_errors == 0
            assert core.dropped_frames == 1


def test_the_recorded_error_frame() -> None:
    # Sent by the service for a sixth context, recorded in livekit/agents-js issue #1985
    # (the SDK has no type for error frames).
    frame = {
        "message": "Maximum simultaneous contexts per WebSocket connection exceeded (5). "
        "Please close an existing context before opening a new one.",
        "error": "max_active_conversations",
        "code": 1008,
    }
    core = started()
    core.receive_message(json.dumps(frame), 0.5)
    (event,) = core.events_received()
    assert isinstance(event, TtsError)
    assert (event.error, event.code) == ("max_active_conversations", 1008)
    assert core.protocol_errors == 0
