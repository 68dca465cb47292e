"""Events an LLM stream yields, and the wire Structs the cores decode.

Rules:

- Every LLM backend (OpenAI-compatible, Anthropic) is reduced to the same four events:
  :class:`TextDelta`, :class:`ToolCallDelta`, :class:`ToolCall` and :class:`Done`. The agent layer never
  sees a vendor's shape.
- ``finish_reason`` uses the OpenAI vocabulary (``stop``, ``length``, ``tool_calls``, ``content_filter``);
  Anthropic's ``stop_reason`` is mapped onto it (``end_turn`` -> ``stop``, ``tool_use`` -> ``tool_calls``,
  ``max_tokens`` -> ``length``).
- A stream that ends without a finish reason (no ``finish_reason`` chunk / no ``message_stop``) still ends
  with a :class:`Done`, flagged ``truncated=True``: the caller decides what a cut reply means.
- Wire Structs only name the fields we read; msgspec ignores the rest (docs/providers.md 5.2: "the SDK is
  lenient about extra fields", and so are we).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

# --- events handed to the agent layer ------------------------------------------------------------------


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts of one completion (Anthropic ``input_tokens``/``output_tokens`` map here)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class TextDelta(msgspec.Struct, frozen=True, tag="text"):
    """A piece of assistant text, in arrival order."""

    text: str


class ToolCallDelta(msgspec.Struct, frozen=True, kw_only=True, tag="tool_call_delta"):
    """One fragment of a tool call's arguments as it arrives.

    ``id`` and ``name`` are those of the call the fragment belongs to (known from its first fragment).
    """

    index: int
    id: str
    name: str
    arguments_delta: str


class ToolCall(msgspec.Struct, frozen=True, kw_only=True, tag="tool_call"):
    """A complete tool call; ``arguments_json`` is the concatenated argument text (not validated)."""

    index: int
    id: str
    name: str
    arguments_json: str


class Done(msgspec.Struct, frozen=True, kw_only=True, tag="done"):
    """The stream ended. Always the last event of a stream that was not cancelled and did not fail."""

    finish_reason: str | None
    usage: Usage | None = None
    truncated: bool = False


class StreamFailure(msgspec.Struct, frozen=True, kw_only=True):
    """The peer reported an error inside the stream (a core never raises; the shell turns this into a
    :class:`~mediasrv.errors.ProviderError`)."""

    kind: str
    message: str
    retryable: bool


LLMEvent = TextDelta | ToolCallDelta | ToolCall | Done
"""What :class:`~mediasrv.providers.llm.stream.LLMStream` yields."""

JSONMap = Mapping[str, object]
"""A JSON object as the caller builds it (OpenAI-style message, tool or response_format)."""


# --- OpenAI chat.completion.chunk (docs/providers.md 5.2) ---------------------------------------------------


class FunctionFragment(msgspec.Struct, frozen=True, kw_only=True):
    """``delta.tool_calls[].function``: the name comes on the first fragment only."""

    name: str | None = None
    arguments: str | None = None


class ToolCallFragment(msgspec.Struct, frozen=True, kw_only=True):
    """``delta.tool_calls[]``: the first fragment for an index carries ``id``/``type``/``function.name``."""

    index: int = 0
    id: str | None = None
    function: FunctionFragment | None = None


class ChunkDelta(msgspec.Struct, frozen=True, kw_only=True):
    """``choices[].delta``; ``content`` may be null or empty."""

    content: str | None = None
    tool_calls: list[ToolCallFragment] | None = None


class ChunkChoice(msgspec.Struct, frozen=True, kw_only=True):
    """``choices[]`` of a chunk."""

    index: int = 0
    delta: ChunkDelta = ChunkDelta()
    finish_reason: str | None = None


class WireUsage(msgspec.Struct, frozen=True, kw_only=True):
    """``usage`` of the final ``choices: []`` chunk (``stream_options.include_usage``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class WireError(msgspec.Struct, frozen=True, kw_only=True):
    """``{"error": {"message", "type", "param", "code"}}`` (docs/providers.md 5.2, mid-stream errors)."""

    message: str = ""
    type: str | None = None
    code: str | int | None = None


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """One ``data:`` JSON of an OpenAI stream: a ``chat.completion.chunk`` or an error object."""

    choices: list[ChunkChoice] = []
    usage: WireUsage | None = None
    error: WireError | None = None


# --- Anthropic Messages streaming (docs/providers.md 5.4) ---------------------------------------------------


class AnthropicBlock(msgspec.Struct, frozen=True, kw_only=True):
    """``content_block`` of ``content_block_start``: type ``text``, ``tool_use`` or ``thinking``."""

    type: str
    text: str = ""
    id: str = ""
    name: str = ""


class AnthropicDelta(msgspec.Struct, frozen=True, kw_only=True):
    """``delta`` of ``content_block_delta`` (``text_delta``/``input_json_delta``) or of ``message_delta``."""

    type: str = ""
    text: str = ""
    partial_json: str = ""
    stop_reason: str | None = None


class AnthropicUsage(msgspec.Struct, frozen=True, kw_only=True):
    """``usage``: ``message_start`` carries input tokens, ``message_delta`` cumulative output tokens."""

    input_tokens: int | None = None
    output_tokens: int | None = None


class AnthropicMessage(msgspec.Struct, frozen=True, kw_only=True):
    """The Message skeleton of ``message_start``."""

    usage: AnthropicUsage | None = None


class AnthropicError(msgspec.Struct, frozen=True, kw_only=True):
    """``error`` of an ``error`` event, e.g. ``{"type": "overloaded_error", "message": "Overloaded"}``."""

    type: str = "error"
    message: str = ""


class AnthropicEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Any ``data:`` JSON of an Anthropic stream; ``type`` repeats the SSE ``event:`` name."""

    type: str
    index: int = 0
    message: AnthropicMessage | None = None
    content_block: AnthropicBlock | None = None
    delta: AnthropicDelta | None = None
    usage: AnthropicUsage | None = None
    error: AnthropicError | None = None
