"""The call-flow planner through the real ``openai`` SDK against the LLM emulator (127.0.0.1, no mocks).

The profile is ``typical`` scaled down for test speed: reply TTFT 150 ms (typical: 500 ms), extraction
600 ms (typical: 800 ms), transition 500 ms (typical: 700 ms), 60 tokens/s, no jitter. The side call is
therefore four times slower than the reply's first token: if it were chained in front of the reply, the
first token would come after ~750 ms; run in parallel, it comes after ~150 ms.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from mediasrv.agent.config import AgentConfig
from mediasrv.agent.flow import CallFlow, CallWebhook, FlowState
from mediasrv.agent.planner import LLMRequest, TurnPlan, TurnPlanner
from mediasrv.agent.prompts import ConversationMemory
from mediasrv.lab.emulators.llm import LLMEmulator
from mediasrv.profiles import Profile, instant_profile
from mediasrv.providers.llm import Done, OpenAIChat, SayExtractor, TextDelta

AGENTS = Path(__file__).resolve().parents[2] / "agents"
REPLY_TTFT_MS = 150
EXTRACTION_MS = 600
TRANSITION_MS = 500
UTTERANCE = "I'm Alice Smith and tomorrow works, please check"


def scaled_typical() -> Profile:
    return instant_profile(
        "typical-scaled",
        llm_ttft_ms=REPLY_TTFT_MS,
        llm_tokens_per_s=60.0,
        extraction_ms=EXTRACTION_MS,
        transition_ms=TRANSITION_MS,
    )


def booking(strategy: str) -> AgentConfig:
    raw = json.loads((AGENTS / "booking_flow.json").read_text())
    raw = copy.deepcopy(raw)
    raw["flow_strategy"] = strategy
    return msgspec.convert(raw, type=AgentConfig)


@pytest.fixture
async def emulator() -> AsyncIterator[LLMEmulator]:
    emu = LLMEmulator(profile=scaled_typical(), rng=random.Random(3))
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def chat(emulator: LLMEmulator) -> AsyncIterator[OpenAIChat]:
    client = OpenAIChat(base_url=emulator.url, api_key="test", max_retries=0, tag_purpose=True)
    yield client
    await client.aclose()


async def at_collect(planner: TurnPlanner) -> tuple[CallFlow, ConversationMemory]:
    """A call that has reached the ``collect`` node (driven without the LLM: the transition is the test's)."""
    flow = CallFlow(planner.agent)
    flow.start()
    memory = ConversationMemory(planner.agent.history_turns)
    plan = planner.plan_turn(flow, "I want to book an appointment", memory)
    planner.finish_side(flow, plan, '{"next": "collect"}')
    planner.finish_reply(flow, plan, "Sure.")
    memory.add_user(plan.utterance)
    memory.add_agent("Sure, I can help with that.")
    assert flow.node.id == "collect"
    return flow, memory


async def drain(request: LLMRequest, chat: OpenAIChat) -> tuple[str, float | None, float | None]:
    """Run one request to the end: its text, TTFT and total time (seconds, from the stream's own stamps)."""
    async with request.send(chat) as stream:
        async for _event in stream:
            pass
        return stream.text, stream.ttft_s, stream.total_s


async def test_parallel_side_call_does_not_delay_the_reply(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    planner = TurnPlanner(booking("parallel"))
    flow, memory = await at_collect(planner)
    plan: TurnPlan = planner.plan_turn(flow, UTTERANCE, memory)
    assert plan.reply is not None and plan.side is not None and plan.extra_calls == 1
    assert plan.extract == ("caller_name", "appointment_date") and plan.choose

    # warm up: the SDK's first chat request pays one-off set-up, and the pool needs two connections
    await asyncio.gather(drain(plan.reply, chat), drain(plan.reply, chat))
    _text, baseline, _total = await drain(plan.reply, chat)  # the same reply with no side call
    assert baseline is not None
    emulator.requests.clear()
    loop = asyncio.get_running_loop()
    started = loop.time()
    (reply_text, reply_ttft, reply_total), (side_text, _side_ttft, side_total) = await asyncio.gather(
        drain(plan.reply, chat), drain(plan.side, chat)
    )
    wall = loop.time() - started
    assert reply_ttft is not None and side_total is not None and reply_total is not None

    # the reply's first token is the reply's own TTFT, not the side call's time in front of it
    print(
        f"\nreply TTFT with side call {reply_ttft * 1000:.0f} ms, alone {baseline * 1000:.0f} ms; "
        f"side call {side_total * 1000:.0f} ms; turn wall {wall * 1000:.0f} ms "
        f"(chained would put the first token at ~{(side_total + baseline) * 1000:.0f} ms)"
    )
    assert reply_ttft < baseline + 0.05
    assert reply_ttft < EXTRACTION_MS / 1000 / 2
    assert side_total >= EXTRACTION_MS / 1000 * 0.9
    assert wall < (EXTRACTION_MS + REPLY_TTFT_MS) / 1000  # overlapped, not summed

    purposes = [r.purpose for r in emulator.requests[:2]]
    assert sorted(purposes) == ["extraction", "reply"]
    side_body = next(r for r in emulator.requests if r.purpose == "extraction").body
    assert side_body["response_format"]["json_schema"]["name"] == "flow"  # type: ignore[index]
    assert side_body["metadata"] == {"purpose": "extraction"}

    # the side call lands: values extracted, the transition to the function node fires the webhook
    actions = planner.finish_side(flow, plan, side_text)
    assert flow.variables == {"caller_name": "Alice Smith", "appointment_date": "tomorrow"}
    [hook] = actions
    assert isinstance(hook, CallWebhook) and hook.payload["variables"] == flow.variables
    assert planner.finish_reply(flow, plan, reply_text) == []
    assert flow.state is FlowState.WEBHOOK
    assert planner.cache.get("collect", UTTERANCE.upper()) == "check"


async def test_merged_turn_streams_say_before_the_json_ends(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    planner = TurnPlanner(booking("merged"))
    flow, memory = await at_collect(planner)
    plan = planner.plan_turn(flow, UTTERANCE, memory)
    assert plan.side is None and plan.reply is not None and plan.say_field == "say"

    loop = asyncio.get_running_loop()
    extractor = SayExtractor(plan.say_field)
    pieces: list[tuple[float, str]] = []
    say_done_at: float | None = None
    done_at: float | None = None
    async with plan.reply.send(chat) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                spoken = extractor.feed(event.text)
                if spoken:
                    pieces.append((loop.time(), spoken))
                if extractor.done and say_done_at is None:
                    say_done_at = loop.time()
            elif isinstance(event, Done):
                done_at = loop.time()
        full = stream.text
    assert pieces and say_done_at is not None and done_at is not None
    assert len(pieces) > 1  # streamed in pieces, not at once
    t0 = stream.started_at
    print(
        f"\nmerged: first say text {(pieces[0][0] - t0) * 1000:.0f} ms, say complete "
        f"{(say_done_at - t0) * 1000:.0f} ms, JSON done {(done_at - t0) * 1000:.0f} ms"
    )
    assert done_at - pieces[0][0] > 0.2  # the TTS had text long before vars/next arrived
    assert done_at - say_done_at > 0.1
    said = "".join(p for _, p in pieces)
    assert said == planner.spoken_text(plan, full) and said
    assert emulator.requests[-1].purpose == "flow"

    [hook] = planner.finish_reply(flow, plan, full)
    assert isinstance(hook, CallWebhook)
    assert flow.variables == {"caller_name": "Alice Smith", "appointment_date": "tomorrow"}
    assert len(emulator.requests) == 1  # one call for reply, extraction and transition
