"""Client-side LLM stream parse cost: per SSE event/chunk and per say-extractor fragment.

Run: ``.venv/bin/python -m pytest bench/bench_llm.py --benchmark-only``. Inputs are a realistic reply
rendered by the emulator's own wire code (word tokens, ~60 chunks), not synthetic zeros. Each bench checks
its result first, then that the mean cost per event stays far below a token interval (~14 ms at 70 tok/s).
"""

from __future__ import annotations

import json

from mediasrv.lab.emulators import llm_rules as rules
from mediasrv.providers.llm import (
    AnthropicAssembler,
    Done,
    OpenAIAssembler,
    SayExtractor,
    SSEParser,
    TextDelta,
    ToolCall,
)

REPLY_TEXT = (
    "Thanks for calling Riverside Dental, this is Ava. I can help you book, move or cancel an appointment; "
    "we have openings on Tuesday at 10:30 and Thursday at 3 pm. Which one works best for you?"
)
CALL = rules.ScriptedToolCall(
    name="set_state", arguments={"next_state": "booking", "variables": {"day": "Tuesday"}}
)
META = rules.ChunkMeta(id="chatcmpl-bench", created=1_700_000_000, model="gpt-4o-mini")
BUDGET_US_PER_EVENT = 100.0  # far below a 14 ms token interval; a regression guard, not a target


def _openai_body() -> tuple[bytes, int]:
    frames = rules.openai_frames(
        rules.Reply(text=REPLY_TEXT, tool_calls=(CALL,)),
        META,
        json_text=False,
        call_ids=["call_1"],
        prompt_tokens=120,
        usage=True,
    )
    body = b"".join(f.data for f in frames)
    return body, body.count(b"\n\n")


def _parse_openai(body: bytes) -> list[object]:
    parser = SSEParser()
    asm = OpenAIAssembler()
    out: list[object] = []
    for start in range(0, len(body), 1400):  # TCP-segment-sized reads
        parser.receive_data(body[start : start + 1400])
        for sse in parser.events_received():
            if sse.data.startswith("[DONE]"):
                asm.receive_end()
            else:
                asm.receive_json(sse.data)
        out.extend(asm.events_received())
    return out


def test_bench_openai_sse_and_chunk_assembly(benchmark) -> None:  # type: ignore[no-untyped-def]
    body, n_events = _openai_body()
    events = _parse_openai(body)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == REPLY_TEXT
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert len(calls) == 1 and json.loads(calls[0].arguments_json)["next_state"] == "booking"
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"
    benchmark(_parse_openai, body)
    per_event_us = benchmark.stats.stats.mean / n_events * 1e6
    benchmark.extra_info["events"] = n_events
    benchmark.extra_info["us_per_event"] = round(per_event_us, 2)
    print(f"\nopenai: {n_events} SSE events, {per_event_us:.2f} us/event (SSE + chunk assembly)")
    assert per_event_us < BUDGET_US_PER_EVENT


def _anthropic_body() -> tuple[bytes, int]:
    frames = rules.anthropic_frames(
        rules.Reply(text=REPLY_TEXT, tool_calls=(CALL,)),
        message_id="msg_bench",
        model="claude",
        call_ids=["toolu_1"],
        prompt_tokens=120,
    )
    body = b"".join(f.data for f in frames)
    return body, body.count(b"\n\n")


def _parse_anthropic(body: bytes) -> list[object]:
    parser = SSEParser()
    asm = AnthropicAssembler()
    out: list[object] = []
    for start in range(0, len(body), 1400):
        parser.receive_data(body[start : start + 1400])
        for sse in parser.events_received():
            asm.receive_event(sse)
        out.extend(asm.events_received())
    asm.receive_end()
    out.extend(asm.events_received())
    return out


def test_bench_anthropic_sse_and_events(benchmark) -> None:  # type: ignore[no-untyped-def]
    body, n_events = _anthropic_body()
    events = _parse_anthropic(body)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == REPLY_TEXT
    assert isinstance(events[-1], Done) and not events[-1].truncated
    benchmark(_parse_anthropic, body)
    per_event_us = benchmark.stats.stats.mean / n_events * 1e6
    benchmark.extra_info["us_per_event"] = round(per_event_us, 2)
    print(f"\nanthropic: {n_events} SSE events, {per_event_us:.2f} us/event (SSE + event assembly)")
    assert per_event_us < BUDGET_US_PER_EVENT


def _structured_fragments() -> list[str]:
    doc = {
        "say": REPLY_TEXT + ' She said "ok" \u2014 see you! \U0001f600',
        "vars": {"name": "Maria Lopez", "phone": "+1 415 555 0199", "date": "2026-03-04"},
        "next": "confirm",
    }
    text = json.dumps(doc)  # ASCII escapes, incl. a surrogate pair
    return rules.split_tokens(text, json_text=True)


def _extract(fragments: list[str]) -> str:
    extractor = SayExtractor()
    for fragment in fragments:
        extractor.feed(fragment)
    return extractor.text


def test_bench_say_extractor_per_fragment(benchmark) -> None:  # type: ignore[no-untyped-def]
    fragments = _structured_fragments()
    assert _extract(fragments) == REPLY_TEXT + ' She said "ok" \u2014 see you! \U0001f600'
    benchmark(_extract, fragments)
    per_fragment_us = benchmark.stats.stats.mean / len(fragments) * 1e6
    benchmark.extra_info["us_per_fragment"] = round(per_fragment_us, 2)
    print(f"\nsay extractor: {len(fragments)} fragments, {per_fragment_us:.2f} us/fragment")
    assert per_fragment_us < BUDGET_US_PER_EVENT
