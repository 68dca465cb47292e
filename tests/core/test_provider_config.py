"""The agent's provider settings, as they reach the wire (issue 12, gaps 1, 3, 5 and 7).

No sockets: the config Structs, the adapter conversions and the Soniox config text. What the
real clients put on the wire against the emulators is in ``tests/loopback/test_provider_fidelity.py``;
that the vendors' own SDK models accept it is in ``tests/contract``.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from mediasrv.agent.adapters import soniox_context
from mediasrv.agent.config import AgentConfig, LLMConfig, STTContext, load_agent
from mediasrv.errors import ConfigError
from mediasrv.providers.soniox.messages import (
    DEFAULT_MODEL,
    MODEL_ALIASES,
    Context,
    ContextEntry,
    SttConfig,
    TranslationTerm,
    encode_text,
)


def write_agent(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"name": "a", **fields}))
    return path


# --------------------------------------------------------------------------- gap 1: the STT model


def test_default_stt_model_is_a_named_model_not_an_alias() -> None:
    assert DEFAULT_MODEL == AgentConfig(name="a").stt.model == SttConfig().model == "stt-rt-v6"
    assert DEFAULT_MODEL not in MODEL_ALIASES
    assert "stt-rt-v4" in MODEL_ALIASES  # the old default: an alias of stt-rt-v5, which Soniox retires


# --------------------------------------------------------------------------- gap 3: the context


def test_a_string_context_becomes_the_structured_objects_text() -> None:
    assert soniox_context("billing calls") == Context(text="billing calls")
    assert soniox_context("  ") is None
    assert soniox_context(None) is None


def test_a_structured_context_keeps_every_part_in_sonioxs_list_form() -> None:
    ctx = STTContext(
        general={"domain": "dentistry", "clinic": "Smile"},
        text="Appointments.",
        terms=["Invisalign"],
        translation_terms={"Mr. Smith": "Sr. Smith"},
    )
    assert soniox_context(ctx) == Context(
        general=[ContextEntry(key="domain", value="dentistry"), ContextEntry(key="clinic", value="Smile")],
        text="Appointments.",
        terms=["Invisalign"],
        translation_terms=[TranslationTerm(source="Mr. Smith", target="Sr. Smith")],
    )
    assert soniox_context(STTContext()) is None


def test_the_context_goes_out_as_an_object_with_only_its_set_parts() -> None:
    text = encode_text(SttConfig(context=Context(text="billing calls", terms=["DSL"])))
    assert json.loads(text)["context"] == {"text": "billing calls", "terms": ["DSL"]}


def test_context_loads_from_an_agent_file_in_both_forms(tmp_path: Path) -> None:
    plain = load_agent(write_agent(tmp_path, stt={"context": "billing"}))
    assert plain.stt.context == "billing"
    rich = load_agent(write_agent(tmp_path, stt={"context": {"general": {"domain": "x"}, "terms": ["y"]}}))
    assert rich.stt.context == STTContext(general={"domain": "x"}, terms=["y"])
    with pytest.raises(ConfigError, match="context"):
        load_agent(write_agent(tmp_path, stt={"context": {"topic": "x"}}))


def test_endpoint_delay_bounds_are_the_sdks(tmp_path: Path) -> None:
    for bad in (499, 3001):
        with pytest.raises(ConfigError, match="max_endpoint_delay_ms"):
            load_agent(write_agent(tmp_path, stt={"max_endpoint_delay_ms": bad}))


# --------------------------------------------------------------------------- gap 5: TTS speed


@pytest.mark.parametrize("speed", [0.7, 1.0, 1.2])
def test_speed_in_the_vendor_range_loads(tmp_path: Path, speed: float) -> None:
    assert load_agent(write_agent(tmp_path, tts={"speed": speed})).tts.speed == speed


@pytest.mark.parametrize("speed", [0.5, 1.3])
def test_speed_out_of_the_vendor_range_is_refused_at_load(tmp_path: Path, speed: float) -> None:
    with pytest.raises(ConfigError, match="speed"):
        load_agent(write_agent(tmp_path, tts={"speed": speed}))


def test_speed_rides_on_every_context_init() -> None:
    from mediasrv.agent.adapters import ElevenLabsTTS

    fast = msgspec.convert({"name": "a", "tts": {"speed": 1.15}}, AgentConfig)
    tts = ElevenLabsTTS(fast, base_url="ws://127.0.0.1:9", api_key="k")
    assert tts.client.config.voice_settings is not None
    assert tts.client.config.voice_settings.speed == 1.15
    plain = ElevenLabsTTS(AgentConfig(name="a"), base_url="ws://127.0.0.1:9", api_key="k")
    assert plain.client.config.voice_settings is None  # the vendor default is not sent


# --------------------------------------------------------------------------- gap 7: token limit


@pytest.mark.parametrize(
    ("provider", "param", "field"),
    [
        ("openai", None, "max_completion_tokens"),
        ("xai", None, "max_tokens"),
        ("groq", None, "max_tokens"),
        ("compatible", None, "max_tokens"),
        ("compatible", "max_completion_tokens", "max_completion_tokens"),
        ("openai", "max_tokens", "max_tokens"),
    ],
)
def test_token_limit_field(provider: str, param: str | None, field: str) -> None:
    cfg = msgspec.convert({"provider": provider, "token_param": param}, LLMConfig)
    assert cfg.token_field() == field


def test_fallback_line_has_a_default_and_loads(tmp_path: Path) -> None:
    assert AgentConfig(name="a").fallback_line
    assert load_agent(write_agent(tmp_path, fallback_line="Bye.")).fallback_line == "Bye."
