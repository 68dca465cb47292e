"""Soniox real-time STT: our wire against the ``soniox`` SDK's own types (issue 12).

* The config our :class:`~mediasrv.providers.soniox.client.SonioxClient` sends, captured on a
  real socket (a small server on 127.0.0.1), is a valid ``RealtimeSTTConfig`` with no field the
  model does not know; so is the config the agent adapter builds, context included (gap 3).
* Our control frames are the very JSON the SDK sends (``{"type": "keepalive"}``,
  ``{"type": "finalize"}``; ``realtime/async_stt.py``), and the end of audio is the same empty
  text frame.
* Every server message the SDK's ``RealtimeEvent``/``Token`` models can build, with optional
  fields absent, null and present, is decoded by the
  :class:`~mediasrv.providers.soniox.stream.TranscriptAssembler` without a protocol error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from soniox.types import RealtimeEvent, RealtimeSTTConfig, Token
from websockets.asyncio.server import ServerConnection, serve

from mediasrv.agent.adapters import SonioxSTT
from mediasrv.agent.config import AgentConfig
from mediasrv.providers.soniox.client import SonioxClient, Timeouts
from mediasrv.providers.soniox.messages import Context, ContextEntry, SttConfig, TranslationTerm, encode_text
from mediasrv.providers.soniox.stream import Endpoint, Finished, SttError, TranscriptAssembler
from tests.contract.sdk_check import assert_model_accepts, build, sdk_variants

RICH = SttConfig(
    language_hints=["en", "es"],
    language_hints_strict=True,
    context=Context(
        general=[ContextEntry(key="domain", value="dental clinic")],
        text="Appointment booking.",
        terms=["Invisalign"],
        translation_terms=[TranslationTerm(source="cita", target="appointment")],
    ),
    enable_speaker_diarization=False,
    enable_language_identification=True,
    max_endpoint_delay_ms=800,
    endpoint_sensitivity=0.2,
    endpoint_latency_adjustment_level=1,
    client_reference_id="v3:call-1",
)


async def frames_sent(config: SttConfig) -> list[str | bytes]:
    """Everything a SonioxClient writes in a short session, as a real server receives it."""
    got: list[str | bytes] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            got.append(message)
            if message == "":
                await ws.send('{"tokens":[],"final_audio_proc_ms":0,"total_audio_proc_ms":0,"finished":true}')
                done.set()
                return

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = SonioxClient(
            config, url=f"ws://127.0.0.1:{port}", api_key="k", timeouts=Timeouts(keepalive_s=0.05)
        )
        async with client:
            client.send_audio(b"\xff" * 160)
            client.finalize()
            await asyncio.sleep(0.2)  # idle: keepalives
        await asyncio.wait_for(done.wait(), 3)
    return got


@pytest.mark.parametrize("config", [SttConfig(), RICH], ids=["default", "every-option"])
async def test_the_config_on_the_wire_is_a_realtime_stt_config(config: SttConfig) -> None:
    sent = await frames_sent(config)
    first = sent[0]
    assert isinstance(first, str)
    validated = assert_model_accepts(RealtimeSTTConfig, json.loads(first))
    assert isinstance(validated, RealtimeSTTConfig)
    assert validated.model == "stt-rt-v6" and "api_key" not in first  # the key is on the upgrade
    controls = [json.loads(m) for m in sent[1:] if isinstance(m, str) and m]
    # the SDK's own control frames, byte for byte in JSON terms
    assert {"type": "finalize"} in controls and {"type": "keepalive"} in controls
    assert all(c in ({"type": "finalize"}, {"type": "keepalive"}) for c in controls)
    assert sent[-1] == ""  # end of audio: the SDK sends the same empty text frame
    assert any(isinstance(m, bytes) and m == b"\xff" * 160 for m in sent)


def test_the_agents_config_with_both_forms_of_context() -> None:
    for context in ("dental bookings", {"general": {"domain": "dentistry"}, "terms": ["molar"]}):
        agent = msgspec.convert({"name": "a", "stt": {"context": context}}, AgentConfig)
        stt = SonioxSTT(agent, url="ws://127.0.0.1:9", api_key="k")
        wire = json.loads(encode_text(msgspec.structs.replace(stt.config, client_reference_id="v3:c")))
        assert_model_accepts(RealtimeSTTConfig, wire)
        assert isinstance(wire["context"], dict)  # gap 3: never the plain string


# --------------------------------------------------------------------------- what we receive


@pytest.mark.parametrize(("variant", "token"), list(sdk_variants(Token)))
def test_every_token_shape_is_decoded(variant: str, token: dict[str, Any]) -> None:
    result = build(RealtimeEvent, "full", {"error_code": None, "error_message": None})
    event = RealtimeEvent.model_validate({**result, "tokens": [token]})
    asm = TranscriptAssembler()
    asm.receive_text(json.dumps(event.model_dump(mode="json", exclude_unset=True)), 1.0)
    events = asm.events_received()
    assert not asm.protocol_errors and asm.messages_parsed == 1, variant
    assert not any(isinstance(e, SttError) for e in events)
    assert any(isinstance(e, Finished) for e in events)  # "finished": true in the full event


@pytest.mark.parametrize(("variant", "message"), list(sdk_variants(RealtimeEvent, {"error_code": None})))
def test_every_result_shape_is_decoded(variant: str, message: dict[str, Any]) -> None:
    asm = TranscriptAssembler()
    asm.receive_text(json.dumps(message), 1.0)
    assert not asm.protocol_errors and asm.messages_parsed == 1, variant
    assert not any(isinstance(e, SttError) for e in asm.events_received())


def test_an_error_event_is_an_error() -> None:
    event = RealtimeEvent(error_code=400, error_message="Invalid model: 'stt-rt-v2'.")
    asm = TranscriptAssembler()
    asm.receive_text(event.model_dump_json(exclude_none=True), 1.0)
    (error,) = asm.events_received()
    assert isinstance(error, SttError) and (error.code, error.retryable) == (400, False)


def test_end_marker_without_is_final_is_an_endpoint() -> None:
    asm = TranscriptAssembler()
    event = RealtimeEvent(tokens=[Token(text="Yes", is_final=True), Token(text="<end>")])
    asm.receive_text(event.model_dump_json(exclude_unset=True), 1.0)
    assert [e.kind for e in asm.events_received() if isinstance(e, Endpoint)] == ["end"]
