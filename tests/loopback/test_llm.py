"""Loopback tests: OpenAIChat (driven by the real ``openai`` SDK) and AnthropicChat (aiohttp) against the
LLM emulator on 127.0.0.1. No mocks: every byte crosses a real socket."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

from mediasrv.errors import ProviderConnectError, ProviderError, ProviderRejected
from mediasrv.lab.emulators.llm import LLMEmulator, LLMFaults
from mediasrv.lab.emulators.llm_rules import Reply, ScriptedToolCall
from mediasrv.profiles import Profile, instant_profile
from mediasrv.providers.llm import (
    AnthropicChat,
    Done,
    LLMEvent,
    LLMStream,
    OpenAIChat,
    ProviderRateLimited,
    SayExtractor,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)


def make_profile(ttft_ms: int = 0, tokens_per_s: float = 0.0) -> Profile:
    return instant_profile("test", llm_ttft_ms=ttft_ms, llm_tokens_per_s=tokens_per_s)


USER = [{"role": "system", "content": "You are a phone agent."}, {"role": "user", "content": "Hello?"}]


@pytest.fixture
async def emulator() -> AsyncIterator[LLMEmulator]:
    emu = LLMEmulator(profile=make_profile(), rng=random.Random(7))
    await emu.start()
    yield emu
    await emu.close()


@pytest.fixture
async def chat(emulator: LLMEmulator) -> AsyncIterator[OpenAIChat]:
    sdk = AsyncOpenAI(base_url=emulator.url, api_key="test", max_retries=0)
    yield OpenAIChat(client=sdk, model="emu-model", tag_purpose=True)
    await sdk.close()


@pytest.fixture
async def claude(emulator: LLMEmulator) -> AsyncIterator[AnthropicChat]:
    client = AnthropicChat("test-key", base_url=emulator.url.removesuffix("/v1"), model="claude-emu")
    yield client
    await client.aclose()


async def collect(stream: LLMStream) -> list[LLMEvent]:
    async with stream:
        return [event async for event in stream]


async def test_streamed_text_matches_script_and_request_is_recorded(
    emulator: LLMEmulator, chat: OpenAIChat
) -> None:
    emulator.script = {"Hello?": "Hi! You reached the clinic. How can I help?"}
    stream = chat.stream(USER, max_tokens=64, temperature=0.2)
    events = await collect(stream)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == "Hi! You reached the clinic. How can I help?"
    assert len(deltas) > 5  # streamed word by word, not in one piece
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop" and not done.truncated
    assert done.usage is not None and done.usage.completion_tokens == len(deltas)
    record = emulator.requests[-1]
    assert record.completed and not record.disconnected
    assert record.messages == USER and record.max_tokens == 64
    assert record.body["stream_options"] == {"include_usage": True}
    assert record.headers["Authorization"] == "Bearer test"
    assert record.purpose == "reply"


async def test_ttft_follows_profile(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.profile = make_profile(ttft_ms=150, tokens_per_s=200)
    stream = chat.stream(USER)
    events = await collect(stream)
    assert isinstance(events[-1], Done)
    assert stream.ttft_s is not None and 0.14 <= stream.ttft_s <= 0.40
    assert stream.total_s is not None and stream.total_s > stream.ttft_s


async def test_tool_call_with_content_is_assembled(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    call = ScriptedToolCall(
        name="set_state", arguments={"next_state": "booking", "variables": {"day": "Tuesday"}}
    )
    emulator.script = [Reply(text="Let me book that.", tool_calls=(call,))]
    tools = [{"type": "function", "function": {"name": "set_state", "parameters": {"type": "object"}}}]
    events = await collect(chat.stream(USER, tools=tools))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me book that."
    assert sum(isinstance(e, ToolCallDelta) for e in events) > 3  # arguments arrive in fragments
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert len(calls) == 1 and calls[0].name == "set_state" and calls[0].id.startswith("call_")
    assert json.loads(calls[0].arguments_json) == {"next_state": "booking", "variables": {"day": "Tuesday"}}
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"
    assert emulator.requests[-1].tools == tools


async def test_json_schema_output_parses_validates_and_say_streams_first(
    emulator: LLMEmulator, chat: OpenAIChat
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "say": {"type": "string"},
            "vars": {"type": "object", "properties": {"phone": {"type": ["string", "null"]}}},
            "next": {"type": "string", "enum": ["ask_phone", "confirm"]},
        },
        "required": ["say", "vars", "next"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "extraction", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "Please confirm, my number is 020 7946 0018."}]
    extractor = SayExtractor()
    say_done_at_piece: int | None = None
    pieces = 0
    async with chat.stream(messages, response_format=fmt, purpose="extraction") as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                pieces += 1
                extractor.feed(event.text)
                if extractor.done and say_done_at_piece is None:
                    say_done_at_piece = pieces
    obj = json.loads(stream.text)
    assert set(obj) == {"say", "vars", "next"} and list(obj)[0] == "say"
    assert isinstance(obj["say"], str) and obj["say"] == extractor.text
    assert obj["vars"] == {"phone": "020 7946 0018"} and obj["next"] == "confirm"
    assert say_done_at_piece is not None and say_done_at_piece < pieces  # spoken text done before the object
    assert emulator.requests[-1].purpose == "extraction"
    assert emulator.requests[-1].response_format == fmt


async def test_rate_limit_is_retryable_rejection(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.faults = LLMFaults(status=429, retry_after_s=2, remaining=1)
    with pytest.raises(ProviderRateLimited) as info:
        await collect(chat.stream(USER))
    assert isinstance(info.value, ProviderRejected) and info.value.retryable and info.value.status == 429
    assert info.value.retry_after_s == 2.0 and info.value.__cause__ is not None
    assert emulator.requests[-1].status == 429
    events = await collect(chat.stream(USER))  # the fault was one-shot
    assert isinstance(events[-1], Done)


async def test_server_error_is_retryable_rejection(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.faults = LLMFaults(status=500)
    with pytest.raises(ProviderRejected) as info:
        await collect(chat.stream(USER))
    assert info.value.status == 500 and info.value.retryable and info.value.provider == "openai"


async def test_wrong_key_is_not_retryable(emulator: LLMEmulator) -> None:
    emulator.api_key = "right"
    sdk = AsyncOpenAI(base_url=emulator.url, api_key="wrong", max_retries=0)
    try:
        with pytest.raises(ProviderRejected) as info:
            await collect(OpenAIChat(client=sdk).stream(USER))
        assert info.value.status == 401 and not info.value.retryable
    finally:
        await sdk.close()


async def test_mid_stream_error_raises_after_text(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.script = ["one two three four five six"]
    emulator.faults = LLMFaults(error_after_tokens=2)
    received: list[str] = []
    with pytest.raises(ProviderError) as info:
        async with chat.stream(USER) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    received.append(event.text)
    assert received == ["one", " two"]
    assert info.value.retryable  # server_error


async def test_truncated_stream_ends_cleanly_and_is_reported(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.script = ["one two three four five six"]
    emulator.faults = LLMFaults(truncate_after_tokens=3)
    events = await asyncio.wait_for(collect(chat.stream(USER)), timeout=3)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one", " two", " three"]
    assert events[-1] == Done(finish_reason=None, truncated=True)


async def test_connection_refused_is_connect_error(emulator: LLMEmulator) -> None:
    url = emulator.url
    await emulator.close()
    sdk = AsyncOpenAI(base_url=url, api_key="test", max_retries=0)
    try:
        with pytest.raises(ProviderConnectError):
            await collect(OpenAIChat(client=sdk).stream(USER))
    finally:
        await sdk.close()


async def test_cancel_closes_the_http_stream_at_once(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.profile = make_profile(ttft_ms=10, tokens_per_s=50)  # 20 ms per token, 100+ tokens
    emulator.script = [" ".join(f"word{i}" for i in range(120))]
    stream = chat.stream(USER)
    seen = 0
    async for event in stream:
        assert isinstance(event, TextDelta)
        seen += 1
        if seen == 3:
            break
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    await stream.aclose()
    await stream.aclose()  # idempotent
    stream.cancel()
    record = emulator.requests[-1]
    for _ in range(20):
        if record.disconnected:
            break
        await asyncio.sleep(0.005)
    assert record.disconnected and not record.completed
    assert record.disconnected_at is not None and record.disconnected_at - cancelled_at < 0.1
    assert record.tokens_sent < 20
    assert [e async for e in stream] == []  # stops yielding
    assert stream.cancelled and stream.done is None


async def test_cancel_from_another_task_wakes_the_consumer(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.profile = make_profile(ttft_ms=2000)  # first token would come in 2 s
    stream = chat.stream(USER)

    async def consume() -> list[LLMEvent]:
        return [event async for event in stream]

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await stream.aclose()  # barge-in: another task cancels while the consumer waits
    assert await asyncio.wait_for(consumer, timeout=0.5) == []
    record = emulator.requests[-1]
    for _ in range(20):
        if record.disconnected:
            break
        await asyncio.sleep(0.005)
    assert record.disconnected and record.tokens_sent == 0


async def test_extraction_purpose_uses_profile_total(emulator: LLMEmulator, chat: OpenAIChat) -> None:
    emulator.profile = instant_profile("test", llm_tokens_per_s=1000, extraction_ms=200)
    stream = chat.stream(USER, purpose="extraction")
    await collect(stream)
    assert stream.total_s is not None and 0.18 <= stream.total_s <= 0.45


async def test_models_endpoint(emulator: LLMEmulator) -> None:
    sdk = AsyncOpenAI(base_url=emulator.url, api_key="test", max_retries=0)
    try:
        models = await sdk.models.list()
        assert [m.id for m in models.data] == ["mediasrv-emulator"]
    finally:
        await sdk.close()


async def test_anthropic_text(emulator: LLMEmulator, claude: AnthropicChat) -> None:
    emulator.script = {"Hello?": "Hello from Claude. How can I help?"}
    stream = claude.stream(USER, max_tokens=100)
    events = await collect(stream)
    assert stream.text == "Hello from Claude. How can I help?"
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    record = emulator.requests[-1]
    assert record.path == "/v1/messages"
    assert record.headers["x-api-key"] == "test-key" and record.headers["anthropic-version"] == "2023-06-01"
    assert record.body["system"] == "You are a phone agent." and record.body["stream"] is True
    assert record.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello?"}]}]


async def test_anthropic_tool_use_block(emulator: LLMEmulator, claude: AnthropicChat) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "transfer_call",
                "description": "Transfer the caller",
                "parameters": {
                    "type": "object",
                    "properties": {"department": {"enum": ["sales", "billing"]}},
                },
            },
        }
    ]
    messages = [{"role": "user", "content": "Can you transfer me to billing?"}]
    events = await collect(claude.stream(messages, tools=tools))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert len(calls) == 1 and calls[0].name == "transfer_call" and calls[0].id.startswith("toolu_")
    assert json.loads(calls[0].arguments_json) == {"department": "billing"}
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"
    sent_tools = emulator.requests[-1].tools
    assert isinstance(sent_tools, list) and sent_tools[0]["input_schema"]["type"] == "object"


async def test_anthropic_errors(emulator: LLMEmulator, claude: AnthropicChat) -> None:
    emulator.faults = LLMFaults(status=429, retry_after_s=3, remaining=1)
    with pytest.raises(ProviderRateLimited) as limited:
        await collect(claude.stream(USER))
    assert limited.value.retry_after_s == 3.0
    emulator.faults = LLMFaults(error_after_tokens=1, remaining=1)
    with pytest.raises(ProviderRejected) as overloaded:
        await collect(claude.stream(USER))
    assert "overloaded_error" in str(overloaded.value) and overloaded.value.retryable


async def test_anthropic_cancel_disconnects(emulator: LLMEmulator, claude: AnthropicChat) -> None:
    emulator.profile = make_profile(ttft_ms=10, tokens_per_s=50)
    emulator.script = [" ".join(f"w{i}" for i in range(100))]
    stream = claude.stream(USER)
    async for _ in stream:
        break
    cancelled_at = asyncio.get_running_loop().time()
    await stream.aclose()
    record = emulator.requests[-1]
    for _ in range(20):
        if record.disconnected:
            break
        await asyncio.sleep(0.005)
    assert record.disconnected and record.disconnected_at is not None
    assert record.disconnected_at - cancelled_at < 0.1


async def test_client_gone_before_the_headers_is_recorded_not_logged(
    emulator: LLMEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A speculation dropped at once closes its connection before the emulator answers.

    The emulator records the request as disconnected; aiohttp logs no "Error handling request".
    """
    host, port = emulator.url.removeprefix("http://").removesuffix("/v1").split(":")
    body = json.dumps({"model": "m", "stream": True, "messages": USER}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(10):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(head + body)
        await writer.drain()
        writer.transport.abort()  # RST: gone before any answer
    for _ in range(100):
        if len(emulator.requests) == 10 and all(r.disconnected or r.completed for r in emulator.requests):
            break
        await asyncio.sleep(0.01)
    assert len(emulator.requests) == 10
    assert all(r.disconnected for r in emulator.requests)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


LONG_REPLY = (
    "One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen."
)


async def test_keepalives_reach_the_wire_and_both_clients_skip_them(
    emulator: LLMEmulator, chat: OpenAIChat, claude: AnthropicChat
) -> None:
    """The emulator sends SSE comments (OpenAI) and ping events (Anthropic) before the first token
    and every few tokens, as real servers may; the text assembled is unchanged."""
    import aiohttp

    emulator.script = {"Hello?": LONG_REPLY}
    async with aiohttp.ClientSession() as http:
        body = {"model": "m", "stream": True, "messages": USER}
        async with http.post(
            f"{emulator.url}/chat/completions", json=body, headers={"Authorization": "Bearer k"}
        ) as r:
            openai_wire = await r.read()
        async with http.post(
            f"{emulator.url.removesuffix('/v1')}/v1/messages",
            json={"model": "m", "max_tokens": 64, "stream": True, "messages": USER[1:]},
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        ) as r:
            anthropic_wire = await r.read()
    assert openai_wire.startswith(b": keep-alive\n\n") and openai_wire.count(b": keep-alive") >= 2
    # (Anthropic: the keep-alives plus the ping that follows message_start)
    assert anthropic_wire.startswith(b"event: ping") and anthropic_wire.count(b"event: ping") >= 3
    for client in (chat, claude):
        events = await collect(client.stream(USER, max_tokens=64))
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == LONG_REPLY
        assert isinstance(events[-1], Done)
