"""What mediasrv sends the providers, and what a call does when a provider refuses it.

The whole demo rig on 127.0.0.1 (the daemon in agent mode, the Soniox, ElevenLabs, LLM and
Telnyx emulators, a simulated caller). Issue 12:

* gap 1: a retired (or refused) STT model must not silently kill STT on every call: the call
  logs one line naming the provider, the code and the message, counts it in ``/metrics``, and
  the caller hears the agent's fallback line, then the call ends. The same for a refused TTS
  (the fallback audio cached at start plays) and a refused LLM key;
* gap 3: the STT ``context`` goes out as Soniox's structured object;
* gap 5: the agent's TTS ``speed`` goes out in each context's ``voice_settings``;
* gap 7: the token limit goes out as ``max_completion_tokens`` for OpenAI.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mediasrv.agent.runner import AgentRunner
from mediasrv.corpus import DEMO_CORPUS
from mediasrv.lab.demo import Demo, DemoOptions
from mediasrv.lab.emulators.caller import SimulatedCaller
from mediasrv.lab.emulators.soniox_script import ScriptUtterance, SttScript
from mediasrv.providers.soniox.messages import Context, ContextEntry

pytestmark = pytest.mark.slow

FALLBACK = "Sorry, our systems are down. Please call back later."


def agent(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "fidelity",
        "system_prompt": "You are the help line of Acme. Be brief.",
        "greeting": "Hi, Acme.",
        "fallback_line": FALLBACK,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Demo]:
    agent_file = tmp_path / "agent.json"
    agent_file.write_text(json.dumps(agent(**getattr(request, "param", {}))))
    opts = DemoOptions(
        profile="fast",
        calls=1,
        corpus=str(DEMO_CORPUS),
        turns=1,
        json=True,
        agent=str(agent_file),
        barge_in_turn=None,
        records=str(tmp_path / "records.db"),
    )
    demo = Demo(opts)
    try:
        await demo.start()
        yield demo
    finally:
        await demo.close()


async def ring(demo: Demo) -> tuple[str, SimulatedCaller, SttScript]:
    """Place one inbound call; returns its id, the simulated caller and its STT script."""
    script = SttScript()
    made: asyncio.Future[SimulatedCaller] = asyncio.get_running_loop().create_future()

    async def factory(url: str, headers: dict[str, str], cci: str) -> SimulatedCaller:
        demo.soniox.scripts[cci] = script
        caller = SimulatedCaller(url, headers=headers, call_control_id=cci)
        made.set_result(caller)
        return caller

    cci = await demo.telnyx.place_inbound_call(caller=factory)
    return cci, await asyncio.wait_for(made, 10), script


async def say_first_utterance(demo: Demo, caller: SimulatedCaller, script: SttScript) -> None:
    utt = demo.utterances[0]
    script.add(ScriptUtterance.from_label(demo.label_dicts[utt.file], audio_offset_ms=len(caller.sent) * 20))
    await caller.say(demo.audio[utt.file])


async def until(predicate: Callable[[], bool], limit_s: float = 15.0) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 - polls emulator records, which have no event
            await asyncio.sleep(0.05)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused the session" in r.getMessage()]


def spoken(demo: Demo) -> str:
    """Everything the TTS emulator synthesised, over all its sessions."""
    return " ".join(text for s in demo.eleven.sessions for text in s.generated_text.values())


async def hung_up(demo: Demo, cci: str, caller: SimulatedCaller) -> None:
    await until(lambda: demo.telnyx.calls[cci].ended)
    await asyncio.wait_for(caller.closed.wait(), 5)


# --------------------------------------------------------------------------- refused sessions


async def test_a_retired_stt_model_gets_the_fallback_line_not_silence(
    rig: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    # Gap 1 of issue 12: an alias whose target is retired. Soniox accepts the socket, then
    # answers the config with an error and closes.
    rig.service.agent.stt.model = "stt-rt-v4"
    rig.soniox.retired_models = frozenset({"stt-rt-v5"})
    caplog.set_level(logging.INFO, logger="mediasrv")
    ended: list[AgentRunner] = []
    rig.service.on_call_ended.append(ended.append)
    cci, caller, _ = await ring(rig)
    await hung_up(rig, cci, caller)
    (line,) = refusals(caplog)
    assert "soniox" in line and "code 400" in line and "retired" in line
    (runner,) = [*rig.service.runners, *ended]
    assert (runner.counters.provider_errors, runner.outcome) == (1, "provider_error")
    assert rig.daemon.metrics.count("mediasrv_provider_errors_total", provider="soniox", code="400") == 1
    assert FALLBACK in spoken(rig)
    # the caller heard the greeting and then the fallback line, and the call was hung up by us
    assert len(caller.heard_audio()) > 8000 * 2
    assert rig.telnyx.calls[cci].hangup_source == "callee"


async def test_a_refused_tts_plays_the_fallback_line_cached_at_start(
    rig: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    cached = rig.service.greetings.get_text(rig.service.agent, FALLBACK)
    assert cached, "the service caches the fallback line at start"
    rig.eleven.api_key = "a key the calls do not have"  # the call's TTS upgrade gets HTTP 401
    caplog.set_level(logging.INFO, logger="mediasrv")
    cci, caller, _ = await ring(rig)
    await hung_up(rig, cci, caller)
    (line,) = refusals(caplog)
    assert "elevenlabs" in line and "code 401" in line
    assert rig.daemon.metrics.count("mediasrv_provider_errors_total", provider="elevenlabs", code="401") == 1
    heard = caller.heard_audio()
    assert cached in heard  # the cached fallback line, byte for byte (after the cached greeting)


async def test_a_refused_llm_key_gets_the_fallback_line(rig: Demo, caplog: pytest.LogCaptureFixture) -> None:
    rig.llm.api_key = "a key the daemon does not have"  # every completion request gets HTTP 401
    caplog.set_level(logging.INFO, logger="mediasrv")
    cci, caller, script = await ring(rig)
    await until(lambda: bool(caller.heard))  # the greeting
    await say_first_utterance(rig, caller, script)
    await hung_up(rig, cci, caller)
    (line,) = refusals(caplog)
    assert "openai" in line and "code 401" in line
    assert rig.daemon.metrics.count("mediasrv_provider_errors_total", provider="openai", code="401") == 1
    assert FALLBACK in spoken(rig)
    assert "say that again" not in spoken(rig)


# --------------------------------------------------------------------------- what goes out


@pytest.mark.parametrize(
    "rig",
    [
        {
            "tts": {"speed": 1.15},
            "stt": {"context": {"general": {"domain": "internet provider"}, "terms": ["Acme", "DSL"]}},
            "llm": {"max_tokens": 123},
        }
    ],
    indirect=True,
)
async def test_speed_context_and_token_limit_reach_the_providers(rig: Demo) -> None:
    await rig.run_call(1)
    (result,) = rig.results
    assert result.reply, "the turn was answered"
    # gap 5: every reply context opens with the agent's speed
    inits = [m for s in rig.eleven.sessions for m in s.messages if m.text == " " and m.context_id is not None]
    assert inits and all(m.voice_settings is not None and m.voice_settings.speed == 1.15 for m in inits)
    # gap 3: the context is Soniox's structured object, not a string
    (session, *_) = [s for s in rig.soniox.sessions if s.config is not None]
    assert session.config is not None
    assert session.config.context == Context(
        general=[ContextEntry(key="domain", value="internet provider")], terms=["Acme", "DSL"]
    )
    assert session.config.model == "stt-rt-v6"
    # gap 7: OpenAI's token limit field, which its reasoning models require
    replies = [r for r in rig.llm.requests if r.purpose == "reply"]
    assert replies and all(r.body.get("max_completion_tokens") == 123 for r in replies)
    assert not any("max_tokens" in r.body for r in replies)
