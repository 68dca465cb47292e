"""The contract checks catch what they are there to catch (a check that passes everything proves nothing)."""

from __future__ import annotations

import pydantic
import pytest
from elevenlabs.types import InitializeConnectionMulti, SendTextMulti
from soniox.types import RealtimeSTTConfig

from tests.contract.sdk_check import assert_model_accepts, build, sdk_variants


def test_an_unknown_field_is_caught_even_where_the_sdk_allows_extras() -> None:
    assert_model_accepts(SendTextMulti, {"text": "Hi ", "context_id": "c1"})
    with pytest.raises(AssertionError, match="contex_id"):
        assert_model_accepts(SendTextMulti, {"text": "Hi ", "contex_id": "c1"})
    with pytest.raises(AssertionError, match="speeed"):
        assert_model_accepts(InitializeConnectionMulti, {"text": " ", "voice_settings": {"speeed": 1.1}})


def test_the_old_string_context_and_the_old_models_limits_would_fail() -> None:
    base = {"model": "stt-rt-v6", "audio_format": "mulaw", "sample_rate": 8000, "num_channels": 1}
    with pytest.raises(pydantic.ValidationError, match="context"):
        assert_model_accepts(RealtimeSTTConfig, {**base, "context": "billing calls"})  # gap 3
    with pytest.raises(pydantic.ValidationError, match="max_endpoint_delay_ms"):
        assert_model_accepts(RealtimeSTTConfig, {**base, "max_endpoint_delay_ms": 200})
    with pytest.raises(pydantic.ValidationError, match="sample_rate"):
        assert_model_accepts(RealtimeSTTConfig, {"model": "m", "audio_format": "mulaw"})


def test_the_three_variants_differ_as_promised() -> None:
    variants = dict(sdk_variants(InitializeConnectionMulti))
    # every field is optional; text is the Literal " " with that default (never null)
    assert set(variants["absent"]) <= {"text"}
    nulls = {k: v for k, v in variants["null"].items() if k != "text"}
    assert nulls and all(v is None for v in nulls.values())
    assert set(nulls) == set(build(InitializeConnectionMulti, "null")) - {"text"}
    assert variants["full"]["text"] == " " and isinstance(variants["full"]["voice_settings"], dict)
