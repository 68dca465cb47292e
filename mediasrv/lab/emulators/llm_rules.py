"""Pure reply planning and wire rendering for the LLM emulator (no sockets, no clock).

Theory of operation: the emulator shell decodes a request body, asks :func:`plan_reply` what to answer
(a :class:`Reply`: text and/or tool calls), asks :func:`openai_frames` / :func:`anthropic_frames` for the
SSE bytes, and :func:`plan_timing` for the delays; then it only sleeps and writes.

Rules:

- Scripted replies win: a queue (``list``, popped in order) or a ``dict`` keyed by the last user message
  (stripped). Otherwise a rule answers.
- Rule replies are one or two short sentences that echo the topic of the caller's last message; variants
  are picked with the injected ``random.Random``, so a seeded rng gives the same conversation every time.
- ``response_format`` json_schema: an object built from the schema, keys in schema order (the spoken
  field first when the schema puts it first). Strings come from the conversation when the property name
  matches a rule (``name``, ``phone``, ``email``, ``date``, ``time``, ``account_number``; ``say``/``reply``/
  ``message`` get the rule reply); nullable properties without a match are ``null``, others ``""``;
  enums pick the value the caller mentioned, else the first. json_object: ``{"say": <rule reply>}``.
- Tools without a script: ``tool_choice`` ``required`` or a named function calls that tool (arguments
  built from its ``parameters`` schema like above). With ``auto``, a tool is called when a word of its
  name (4+ letters) appears in the last user message; the call follows a short spoken sentence, so
  content and a tool call arrive in one response (docs/providers.md 5.3).
- Purpose convention (picks the latency of a call): ``metadata.purpose``, else
  ``response_format.json_schema.name``, else ``user``; ``extraction`` and ``transition`` are special, any
  other value is a normal reply.
- Tokens: text is cut into words (with their leading space; long words in 4-character pieces), JSON and
  tool arguments into 4-character pieces. One token is one SSE event.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec
import orjson

from mediasrv.profiles import Profile

SPECIAL_PURPOSES: Final = frozenset({"extraction", "transition"})

_WORD: Final = re.compile(r"\s*\S+|\s+$")
_PIECE: Final = re.compile(r".{1,4}", re.S)
_FILLER: Final = re.compile(
    r"^(?:(?:hi|hello|hey|yes|yeah|no|ok|okay|well|so|um|uh|please)[,.!]?\s+)*"
    r"(?:i(?:'d| would) like to|i want(?: to)?|i need(?: to)?|can you|could you|can i|could i|i'm calling to|"
    r"i am calling to|i'm calling about|i am calling about)?\s*",
    re.I,
)
_SWAPS: Final[dict[str, str]] = {"my": "your", "i": "you", "me": "you", "i'm": "you're", "mine": "yours"}
_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "name": re.compile(r"(?i:my name is|this is|i am|i'm|name's)\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"),
    "phone": re.compile(r"(\+?\d[\d ().-]{5,}\d)"),
    "email": re.compile(r"([\w.+-]+@[\w-]+\.[\w.-]+)"),
    "date": re.compile(
        r"(?i)\b(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|today|tomorrow|"
        r"(?:next\s+)?(?:mon|tues|wednes|thurs|fri|satur|sun)day|"
        r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?)\b"
    ),
    "time": re.compile(r"(?i)\b(\d{1,2}(?::\d{2})?\s*(?:am|pm)|noon|midnight)\b"),
    "account_number": re.compile(
        r"(?i:account(?:\s+(?:number|no\.?|#))?(?:\s+is)?)[\s:#]*([A-Z0-9][A-Z0-9-]{3,})"
    ),
}
_SPOKEN_FIELDS: Final = frozenset({"say", "reply", "message", "response", "text", "answer"})


class ScriptedToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call the emulator should make; ``arguments`` is JSON text or an object to encode."""

    name: str
    arguments: str | dict[str, object] = "{}"


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """What one response contains: text (streamed first), then tool calls."""

    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    finish_reason: str | None = None
    """Override; default ``tool_calls`` when there are calls, else ``stop``."""

    @property
    def finish(self) -> str:
        """The finish reason to send."""
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


Script = list[str | Reply] | dict[str, str | Reply]


def _dict(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def message_text(message: Mapping[str, object]) -> str:
    """The text of a message whose content is a string or a list of text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(_dict(part).get("text", "")) for part in content)
    return ""


def user_texts(messages: Sequence[object]) -> list[str]:
    """Texts of the user messages, oldest first."""
    return [message_text(_dict(m)) for m in messages if _dict(m).get("role") == "user"]


def request_purpose(body: Mapping[str, object]) -> str:
    """The call's purpose by the convention in the module docstring."""
    purpose = _dict(body.get("metadata")).get("purpose")
    if isinstance(purpose, str):
        return purpose
    name = _dict(_dict(body.get("response_format")).get("json_schema")).get("name")
    if name in SPECIAL_PURPOSES:
        return str(name)
    user = body.get("user")
    return user if isinstance(user, str) and user in SPECIAL_PURPOSES else "reply"


def _topic(text: str) -> str:
    words = _FILLER.sub("", text.strip()).rstrip(".!?").split()
    swapped = [_SWAPS.get(w.lower(), w) for w in words[:8]]
    return " ".join(swapped).strip(" ,;:")


def rule_reply(messages: Sequence[object], rng: random.Random) -> str:
    """One or two short sentences answering the caller's last message."""
    texts = user_texts(messages)
    last = texts[-1].strip() if texts else ""
    lowered = last.lower()
    if not last:
        return "Hello, thanks for calling. How can I help you today?"
    if re.search(r"\b(bye|goodbye|that's all|that is all)\b", lowered):
        return "Thanks for calling. Goodbye!"
    if re.fullmatch(r"(hi|hello|hey|good (morning|afternoon|evening))[\s,.!]*(there)?[\s,.!]*", lowered):
        return rng.choice(["Hi there! How can I help you today?", "Hello! What can I do for you today?"])
    if re.search(r"\b(thanks|thank you)\b", lowered):
        return "You're welcome. Is there anything else I can help with?"
    topic = _topic(last) or "that"
    if last.endswith("?") or re.match(r"(?i)(what|when|where|who|why|how|can|could|do|does|is|are)\b", last):
        return rng.choice(
            [f"Good question about {topic}. Let me check that for you.", f"Let me look into {topic} for you."]
        )
    return rng.choice(
        [
            f"Sure, I can help with {topic}. Could you tell me a bit more?",
            f"Got it: {topic}. What else should I know?",
        ]
    )


def extract_fields(messages: Sequence[object]) -> dict[str, str]:
    """Values found in the user messages by the name rules (the latest mention wins)."""
    found: dict[str, str] = {}
    for text in user_texts(messages):
        for field, pattern in _PATTERNS.items():
            match = pattern.search(text)
            if match:
                found[field] = match.group(1).strip()
    return found


def _field_rule(name: str) -> str | None:
    key = name.lower().replace("-", "_")
    if "account" in key:
        return "account_number"
    for field in ("email", "phone", "time", "date", "name"):
        if field in key:
            return field
    if key.endswith("_number") or key == "number":
        return "phone"
    if key == "day":
        return "date"
    return None


class _Context:
    def __init__(self, messages: Sequence[object], rng: random.Random) -> None:
        texts = user_texts(messages)
        self.last = texts[-1] if texts else ""
        self.fields = extract_fields(messages)
        self.spoken = rule_reply(messages, rng)


def _types(schema: Mapping[str, object]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    return [str(kind)] if isinstance(kind, str) else []


def _enum_value(values: list[object], ctx: _Context) -> object:
    lowered = ctx.last.lower()
    for value in values:
        if isinstance(value, str) and value and value.lower().replace("_", " ") in lowered:
            return value
    return values[0] if values else None


def build_value(schema: Mapping[str, object], name: str, ctx: _Context) -> object:
    """A value valid for ``schema``, filled from the conversation where a rule applies."""
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if _dict(o).get("type") != "null"]
            return build_value(_dict((non_null or options)[0]), name, ctx)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list):
        return _enum_value(enum, ctx)
    types = _types(schema)
    nullable = "null" in types
    kind = next((t for t in types if t != "null"), "object" if "properties" in schema else "string")
    if kind == "object":
        props = _dict(schema.get("properties"))
        return {key: build_value(_dict(sub), key, ctx) for key, sub in props.items()}
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        digits = re.search(r"\b\d+\b", ctx.last)
        return int(digits.group()) if digits else (None if nullable else 0)
    if name.lower() in _SPOKEN_FIELDS:
        return ctx.spoken
    rule = _field_rule(name)
    if rule is not None and rule in ctx.fields:
        return ctx.fields[rule]
    return None if nullable else ""


def _tool_name_words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\W]+", name.lower()) if len(w) >= 4]


def _rule_tool_call(body: Mapping[str, object], ctx: _Context) -> ScriptedToolCall | None:
    raw = body.get("tools")
    tools = [_dict(_dict(t).get("function")) for t in (raw if isinstance(raw, list) else [])]
    if not tools:
        return None
    choice = body.get("tool_choice")
    chosen: Mapping[str, object] | None = None
    named = _dict(_dict(choice).get("function")).get("name")
    if named:
        chosen = next((t for t in tools if t.get("name") == named), None)
    elif choice == "required":
        chosen = tools[0]
    elif choice != "none":
        lowered = ctx.last.lower()
        chosen = next(
            (t for t in tools if any(w in lowered for w in _tool_name_words(str(t.get("name"))))), None
        )
    if chosen is None:
        return None
    args = build_value(_dict(chosen.get("parameters")) or {"type": "object"}, "", ctx)
    return ScriptedToolCall(name=str(chosen.get("name")), arguments=orjson.dumps(args).decode())


def _scripted(script: Script | None, messages: Sequence[object]) -> Reply | None:
    item: str | Reply | None = None
    if isinstance(script, list):
        item = script.pop(0) if script else None
    elif isinstance(script, dict):
        texts = user_texts(messages)
        item = script.get(texts[-1].strip()) if texts else None
    if item is None:
        return None
    return Reply(text=item) if isinstance(item, str) else item


def plan_reply(body: Mapping[str, object], script: Script | None, rng: random.Random) -> Reply:
    """Decide the response to a chat request (scripted, else by the rules in the module docstring)."""
    messages = body.get("messages")
    history: Sequence[object] = messages if isinstance(messages, list) else []
    scripted = _scripted(script, history)
    if scripted is not None:
        return scripted
    ctx = _Context(history, rng)
    response_format = _dict(body.get("response_format"))
    if response_format.get("type") == "json_schema":
        schema = _dict(_dict(response_format.get("json_schema")).get("schema"))
        return Reply(text=orjson.dumps(build_value(schema or {"type": "object"}, "", ctx)).decode())
    if response_format.get("type") == "json_object":
        return Reply(text=orjson.dumps({"say": ctx.spoken}).decode())
    call = _rule_tool_call(body, ctx)
    if call is not None:
        return Reply(text="One moment please.", tool_calls=(call,))
    return Reply(text=ctx.spoken)


def split_tokens(text: str, *, json_text: bool = False) -> list[str]:
    """Cut text into streamed tokens: words (long ones in 4-character pieces), or 4-character pieces."""
    if json_text:
        return _PIECE.findall(text)
    tokens: list[str] = []
    for word in _WORD.findall(text):
        tokens.extend(_PIECE.findall(word) if len(word.strip()) > 12 else [word])
    return tokens


def tool_arguments(call: ScriptedToolCall) -> str:
    """The call's arguments as JSON text."""
    return call.arguments if isinstance(call.arguments, str) else orjson.dumps(call.arguments).decode()


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    """Delays of one response: before the first token, and between tokens (seconds)."""

    ttft_s: float
    interval_s: float
    jitter_s: float


def plan_timing(profile: Profile, purpose: str, n_tokens: int, rng: random.Random) -> Timing:
    """Latency of one response from the profile: TTFT then ``llm_tokens_per_s``; an extraction or transition
    call instead takes ``extraction_ms``/``transition_ms`` in total (when the profile defines it)."""
    jitter_s = profile.jitter_ms / 1000.0
    interval = 1.0 / profile.llm_tokens_per_s if profile.llm_tokens_per_s > 0 else 0.0
    ttft = profile.llm_ttft_ms / 1000.0 + rng.uniform(-jitter_s, jitter_s)
    total_ms = profile.extraction_ms if purpose == "extraction" else None
    if purpose == "transition":
        total_ms = profile.transition_ms
    if total_ms is not None:
        total = total_ms / 1000.0 + rng.uniform(-jitter_s, jitter_s)
        if n_tokens:
            interval = min(interval, 0.5 * total / n_tokens)
        ttft = total - interval * n_tokens
    return Timing(ttft_s=max(0.0, ttft), interval_s=interval, jitter_s=min(jitter_s, interval / 2))


def count_prompt_tokens(body: Mapping[str, object]) -> int:
    """A rough prompt size (4 characters a token), for ``usage``."""
    messages = body.get("messages")
    chars = sum(len(message_text(_dict(m))) for m in messages) if isinstance(messages, list) else 0
    return max(1, chars // 4)


# --- OpenAI wire (docs/providers.md 5.2, 5.5) ---------------------------------------------------------------


class Frame(msgspec.Struct, frozen=True):
    """Bytes to write; ``token`` frames are paced (TTFT before the first, the token interval after)."""

    data: bytes
    token: bool


def _sse(payload: object, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


class ChunkMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Fields repeated on every chunk (docs/providers.md 5.5: ``id``, ``object``, ``created``, ``model``)."""

    id: str
    created: int
    model: str


def _chunk(meta: ChunkMeta, delta: dict[str, object], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return _sse(
        {
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "system_fingerprint": None,
            "choices": [choice],
            "usage": None,
        }
    )


def openai_frames(
    reply: Reply,
    meta: ChunkMeta,
    *,
    json_text: bool,
    call_ids: Sequence[str],
    prompt_tokens: int,
    usage: bool,
) -> list[Frame]:
    """The whole stream of one response: role chunk (sent with the first token), content, fragmented
    tool calls, the finish chunk, the optional usage chunk and ``[DONE]``."""
    frames: list[Frame] = []
    for token in split_tokens(reply.text, json_text=json_text):
        frames.append(Frame(_chunk(meta, {"content": token}), True))
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": call_ids[index], "type": "function"}
        head["function"] = {"name": call.name, "arguments": ""}
        frames.append(Frame(_chunk(meta, {"tool_calls": [head]}), True))
        for piece in split_tokens(tool_arguments(call), json_text=True):
            fragment = {"index": index, "function": {"arguments": piece}}
            frames.append(Frame(_chunk(meta, {"tool_calls": [fragment]}), True))
    role = _chunk(meta, {"role": "assistant", "content": ""})
    if frames:
        frames[0] = Frame(role + frames[0].data, True)
    else:
        frames.append(Frame(role, False))
    completion_tokens = sum(1 for f in frames if f.token)
    frames.append(Frame(_chunk(meta, {}, reply.finish), False))
    if usage:
        totals = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        payload = {"id": meta.id, "object": "chat.completion.chunk", "created": meta.created}
        frames.append(Frame(_sse({**payload, "model": meta.model, "choices": [], "usage": totals}), False))
    frames.append(Frame(b"data: [DONE]\n\n", False))
    return frames


def openai_completion(reply: Reply, meta: ChunkMeta, call_ids: Sequence[str], prompt_tokens: int) -> bytes:
    """The non-stream ``chat.completion`` body."""
    message: dict[str, object] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": c.name, "arguments": tool_arguments(c)}}
            for cid, c in zip(call_ids, reply.tool_calls, strict=False)
        ]
    completion = len(split_tokens(reply.text))
    return orjson.dumps(
        {
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        }
    )


def openai_error(message: str, kind: str, code: str | None = None) -> dict[str, object]:
    """The error object shape ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --- Anthropic wire (docs/providers.md 5.4) -----------------------------------------------------------------

_ANTHROPIC_STOP: Final = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def anthropic_frames(
    reply: Reply, *, message_id: str, model: str, call_ids: Sequence[str], prompt_tokens: int
) -> list[Frame]:
    """Named-event stream: message_start, ping, blocks (text, then tool_use), message_delta, message_stop."""
    usage = {"input_tokens": prompt_tokens, "output_tokens": 1}
    skeleton = {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": []}
    start = {"type": "message_start", "message": {**skeleton, "stop_reason": None, "usage": usage}}
    frames = [Frame(_sse(start, "message_start"), False), Frame(_sse({"type": "ping"}, "ping"), False)]
    index = 0
    if reply.text:
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        frames.append(Frame(_sse(block, "content_block_start"), False))
        for token in split_tokens(reply.text):
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": token},
            }
            frames.append(Frame(_sse(delta, "content_block_delta"), True))
        frames.append(Frame(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"), False))
        index = 1
    for offset, call in enumerate(reply.tool_calls):
        i = index + offset
        head = {"type": "tool_use", "id": call_ids[offset], "name": call.name, "input": {}}
        frames.append(
            Frame(
                _sse(
                    {"type": "content_block_start", "index": i, "content_block": head}, "content_block_start"
                ),
                True,
            )
        )
        for piece in split_tokens(tool_arguments(call), json_text=True):
            delta = {"type": "input_json_delta", "partial_json": piece}
            frames.append(
                Frame(
                    _sse({"type": "content_block_delta", "index": i, "delta": delta}, "content_block_delta"),
                    True,
                )
            )
        frames.append(Frame(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"), False))
    output_tokens = sum(1 for f in frames if f.token)
    stop = _ANTHROPIC_STOP.get(reply.finish, "end_turn")
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }
    frames.append(Frame(_sse(message_delta, "message_delta"), False))
    frames.append(Frame(_sse({"type": "message_stop"}, "message_stop"), False))
    return frames


def anthropic_error(kind: str, message: str) -> dict[str, object]:
    """Anthropic's error shape ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def sse_bytes(payload: object, event: str | None = None) -> bytes:
    """One SSE event (``event:`` line when named) carrying ``payload`` as JSON."""
    return _sse(payload, event)
