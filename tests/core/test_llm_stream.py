"""Core tests for the LLM stream cores: SSE framing, OpenAI chunk assembly, the say extractor, Anthropic
events, request translation and the emulator's pure reply rules. No event loop, no sockets."""

from __future__ import annotations

import json
import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from mediasrv.lab.emulators import llm_rules as rules
from mediasrv.profiles import get_profile
from mediasrv.providers.llm import (
    AnthropicAssembler,
    Done,
    OpenAIAssembler,
    SayExtractor,
    SSEEvent,
    SSEParser,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from mediasrv.providers.llm.translate import build_body

# --- helpers -------------------------------------------------------------------------------------


def parse_sse(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        parser.receive_data(piece)
        events.extend(parser.events_received())
    parser.receive_eof()
    events.extend(parser.events_received())
    return events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": None,
        }
    )


def assemble(payloads: list[bytes], *, end: bool = True) -> tuple[OpenAIAssembler, list[object]]:
    asm = OpenAIAssembler()
    events: list[object] = []
    for payload in payloads:
        asm.receive_json(payload)
        events.extend(asm.events_received())
    if end:
        asm.receive_end()
        events.extend(asm.events_received())
    return asm, events


# --- SSE (WHATWG HTML 9.2.6 "Interpreting an event stream") ---------------------------------------

STREAM = (
    "\ufeff: keep-alive comment\r\n"
    "event: message_start\r\n"
    'data: {"type":"message_start"}\r\n'
    "\r\n"
    "data: first line\n"
    "data:second line é 🎉\n"
    "id: 7\n"
    "\n"
    "event: ping\r"
    'data: {"type": "ping"}\r'
    "\r"
    "data: [DONE]\n\n"
).encode()

EXPECTED = [
    SSEEvent(event="message_start", data='{"type":"message_start"}'),
    SSEEvent(data="first line\nsecond line é 🎉", id="7"),
    SSEEvent(event="ping", data='{"type": "ping"}', id="7"),
    SSEEvent(data="[DONE]", id="7"),
]


def test_sse_whole_stream_mixed_line_endings() -> None:
    assert parse_sse([STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_sse_any_byte_split_gives_same_events(cuts: list[int]) -> None:
    assert parse_sse(split_at(STREAM, cuts)) == EXPECTED


def test_sse_byte_at_a_time_cr_lf_split() -> None:
    data = b"data: a\r\n\r\ndata: b\r\n\r\n"
    assert parse_sse([data[i : i + 1] for i in range(len(data))]) == [SSEEvent(data="a"), SSEEvent(data="b")]


def test_sse_unterminated_event_is_discarded_at_eof() -> None:
    assert parse_sse([b"data: complete\n\ndata: cut"]) == [SSEEvent(data="complete")]


def test_sse_retry_field_digits_only() -> None:
    events = parse_sse([b"retry: 1500\ndata: x\n\nretry: soon\ndata: y\n\n"])
    assert [e.retry for e in events] == [1500, 1500]


# --- OpenAI chunk assembly (docs/providers.md 5.2, 5.3) -------------------------------------------------


def test_openai_text_finish_and_usage() -> None:
    usage_chunk = orjson.dumps(
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    )
    _, events = assemble(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": None}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            usage_chunk,
        ]
    )
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Done(finish_reason="stop", usage=Usage(prompt_tokens=9, completion_tokens=2)),
    ]


def test_openai_tool_call_fragments_two_indices_interleaved() -> None:
    def frag(index: int, **fields: object) -> bytes:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    _, events = assemble(
        [
            chunk({"content": "One moment."}),
            frag(0, id="call_a", type="function", function={"name": "lookup", "arguments": ""}),
            frag(1, id="call_b", type="function", function={"name": "set_state", "arguments": '{"ne'}),
            frag(0, function={"arguments": '{"q":'}),
            frag(1, function={"arguments": 'xt":"done"}'}),
            frag(0, function={"arguments": '"x"}'}),
            chunk({}, "tool_calls"),
        ]
    )
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls == [
        ToolCall(index=0, id="call_a", name="lookup", arguments_json='{"q":"x"}'),
        ToolCall(index=1, id="call_b", name="set_state", arguments_json='{"next":"done"}'),
    ]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [d.id for d in deltas] == ["call_a", "call_b", "call_a", "call_b", "call_a"]
    assert events[0] == TextDelta("One moment.")
    assert events[-1] == Done(finish_reason="tool_calls", usage=None)


def test_openai_repeated_index_zero_distinct_ids_are_two_calls() -> None:
    # Ollama-style backends reuse index 0 for parallel calls (docs/providers.md 5.3): key on id.
    def frag(**fields: object) -> bytes:
        return chunk({"tool_calls": [{"index": 0, **fields}]})

    _, events = assemble(
        [
            frag(id="call_1", function={"name": "a", "arguments": '{"x":1}'}),
            frag(id="call_2", function={"name": "b", "arguments": "{"}),
            frag(function={"arguments": '"y":2}'}),
            chunk({}, "tool_calls"),
        ]
    )
    assert [e for e in events if isinstance(e, ToolCall)] == [
        ToolCall(index=0, id="call_1", name="a", arguments_json='{"x":1}'),
        ToolCall(index=0, id="call_2", name="b", arguments_json='{"y":2}'),
    ]


def test_openai_missing_finish_is_truncated_done() -> None:
    _, events = assemble([chunk({"content": "cut"})])
    assert events == [TextDelta("cut"), Done(finish_reason=None, truncated=True)]


def test_openai_error_object_fails_stream_and_stops_events() -> None:
    error = orjson.dumps({"error": {"message": "boom", "type": "server_error", "code": None}})
    asm, events = assemble([chunk({"content": "a"}), error, chunk({"content": "b"})])
    assert events == [TextDelta("a")]
    assert asm.failure is not None and asm.failure.kind == "server_error" and asm.failure.retryable


def test_openai_undecodable_chunk_is_protocol_failure() -> None:
    asm, events = assemble([b"{not json"])
    assert events == []
    assert asm.failure is not None and asm.failure.kind == "protocol" and not asm.failure.retryable


# --- say extractor (docs/providers.md 5.3, RFC 8259 section 7) ------------------------------------------

SAY_TEXTS = st.lists(
    st.one_of(
        st.sampled_from(['"', "\\", "\n", "\t", "/", "é", "🎉", "\u2028", "\x01", '"say":', ",", "{", "}"]),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300)
@given(SAY_TEXTS, st.booleans(), st.lists(st.integers(min_value=0, max_value=400), max_size=15))
def test_say_extractor_any_fragmentation(say: str, ascii_only: bool, cuts: list[int]) -> None:
    doc = {"say": say, "vars": {"say": "not me", "name": None}, "next": "confirm"}
    text = json.dumps(doc, ensure_ascii=ascii_only)  # ascii: \uXXXX escapes incl. surrogate pairs
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    extractor = SayExtractor()
    pieces = [extractor.feed(text[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert "".join(pieces) == say
    assert extractor.text == say and extractor.done


def test_say_extractor_streams_before_object_is_complete() -> None:
    extractor = SayExtractor()
    assert extractor.feed('{"sa') == ""
    assert extractor.feed('y": "Hello, ') == "Hello, "
    assert extractor.feed("wor") == "wor"
    assert not extractor.done
    assert extractor.feed("ld\\n\\ud83d") == "ld\n"  # high surrogate held back
    assert extractor.feed('\\ude00!", "next":') == "😀!"
    assert extractor.done


def test_say_extractor_ignores_nested_and_value_lookalikes() -> None:
    extractor = SayExtractor()
    doc = '{"note": "say", "inner": {"say": "no"}, "list": ["say", {"say": "no"}], "say": "yes"}'
    assert extractor.feed(doc) == "yes"


def test_say_extractor_lone_surrogate_becomes_replacement() -> None:
    extractor = SayExtractor()
    assert extractor.feed('{"say": "a\\ud800b"}') == "a\ufffdb"


# --- Anthropic Messages events (docs/providers.md 5.4) --------------------------------------------------


def anthropic_stream(*events: tuple[str, dict[str, object]]) -> bytes:
    return b"".join(
        f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n" for name, data in events
    )


ANTHROPIC_OK = anthropic_stream(
    ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 12}}}),
    ("ping", {"type": "ping"}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    ),
    ("ping", {"type": "ping"}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "set_state", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"n'},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '":1}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
    ),
    ("message_stop", {"type": "message_stop"}),
)


def run_anthropic(pieces: list[bytes]) -> tuple[AnthropicAssembler, list[object]]:
    asm = AnthropicAssembler()
    out: list[object] = []
    for sse in parse_sse(pieces):
        asm.receive_event(sse)
        out.extend(asm.events_received())
    asm.receive_end()
    out.extend(asm.events_received())
    return asm, out


@given(st.lists(st.integers(min_value=0, max_value=len(ANTHROPIC_OK)), max_size=10))
def test_anthropic_text_and_tool_use_any_split(cuts: list[int]) -> None:
    asm, events = run_anthropic(split_at(ANTHROPIC_OK, cuts))
    assert asm.failure is None
    assert events == [
        TextDelta("Hi"),
        ToolCallDelta(index=0, id="toolu_1", name="set_state", arguments_delta=""),
        ToolCallDelta(index=0, id="toolu_1", name="set_state", arguments_delta='{"n'),
        ToolCallDelta(index=0, id="toolu_1", name="set_state", arguments_delta='":1}'),
        ToolCall(index=0, id="toolu_1", name="set_state", arguments_json='{"n":1}'),
        Done(finish_reason="tool_calls", usage=Usage(prompt_tokens=12, completion_tokens=7)),
    ]


def test_anthropic_mid_stream_error_fails() -> None:
    data = anthropic_stream(
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "A"}},
        ),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
    asm, events = run_anthropic([data])
    assert events == [TextDelta("A")]
    assert asm.failure is not None and asm.failure.kind == "overloaded_error" and asm.failure.retryable


def test_anthropic_without_message_stop_is_truncated() -> None:
    data = anthropic_stream(
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "A"}},
        )
    )
    _, events = run_anthropic([data])
    assert events[-1] == Done(finish_reason=None, usage=Usage(), truncated=True)


def test_anthropic_body_moves_system_and_translates_tools() -> None:
    tools = [
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}
    ]
    body = build_body(
        "claude",
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
            {"role": "user", "content": "and?"},
        ],
        tools=tools,
        tool_choice="required",
        response_format=None,
        max_tokens=50,
        temperature=None,
    )
    assert body["system"] == "Be brief."
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}, "description": "d"}]
    assert body["tool_choice"] == {"type": "any"}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                {"type": "text", "text": "and?"},
            ],
        },
    ]


# --- emulator rules (pure) ---------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "say": {"type": "string"},
        "vars": {
            "type": "object",
            "properties": {
                "name": {"type": ["string", "null"]},
                "phone": {"type": ["string", "null"]},
                "account_number": {"type": ["string", "null"]},
                "date": {"type": ["string", "null"]},
            },
        },
        "next": {"type": "string", "enum": ["collect_info", "transfer", "goodbye"]},
    },
}


def test_rules_json_schema_reply_fills_fields_in_schema_order() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Hi, my name is Maria Lopez and my account number is AB-99812."},
            {"role": "user", "content": "Please transfer me, call back 415 555 0199 tomorrow."},
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "extraction", "schema": SCHEMA}},
    }
    reply = rules.plan_reply(body, None, random.Random(1))
    obj = json.loads(reply.text)
    assert list(obj) == ["say", "vars", "next"]
    assert obj["vars"] == {
        "name": "Maria Lopez",
        "phone": "415 555 0199",
        "account_number": "AB-99812",
        "date": "tomorrow",
    }
    assert obj["next"] == "transfer" and obj["say"]
    assert rules.request_purpose(body) == "extraction"


def test_rules_text_reply_is_deterministic_and_short() -> None:
    messages = [{"role": "user", "content": "I want to book an appointment for Tuesday."}]
    a = rules.rule_reply(messages, random.Random(3))
    assert a == rules.rule_reply(messages, random.Random(3))
    assert "appointment for Tuesday" in a and a.count(".") + a.count("?") <= 2


def test_rules_timing_follows_profile() -> None:
    typical = get_profile("typical")
    reply = rules.plan_timing(typical, "reply", 10, random.Random(0))
    assert abs(reply.ttft_s - 0.5) <= 0.02 and reply.interval_s == 1 / 40
    extraction = rules.plan_timing(typical, "extraction", 10, random.Random(0))
    assert abs(extraction.ttft_s + 10 * extraction.interval_s - 0.8) <= 0.02
