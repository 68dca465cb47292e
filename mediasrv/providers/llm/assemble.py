"""Sans-I/O assemblers: OpenAI chunks and Anthropic events in, :data:`LLMEvent` values out.

Rules:

- Input goes in through ``receive_*``; output comes out of ``events_received()``. Nothing here awaits,
  logs or raises for the peer's input: an undecodable payload or an in-stream error becomes
  :attr:`failure` (a :class:`StreamFailure`) and the assembler ignores everything after it.
- OpenAI tool calls (docs/providers.md 5.3): fragments are concatenated per ``index``; the first fragment of
  an index carries ``id`` and ``function.name``. Some backends reuse index 0 for parallel calls and tell
  them apart only by ``id``, so a fragment whose ``id`` differs from the open call at that index starts a
  new call. Complete :class:`ToolCall` events are emitted, in order of first appearance, when the
  ``finish_reason`` arrives (or at end of stream).
- OpenAI sends usage on a final ``choices: []`` chunk *after* the finish chunk
  (``stream_options.include_usage``), so :class:`Done` is emitted from :meth:`receive_end`.
- Anthropic (docs/providers.md 5.4): ``content_block_start`` opens a ``text`` or ``tool_use`` block by
  ``index``; ``text_delta`` and ``input_json_delta`` add to it; ``content_block_stop`` of a ``tool_use``
  block emits the :class:`ToolCall`; ``message_delta`` carries ``stop_reason`` and cumulative usage;
  ``message_stop`` ends the stream; ``ping`` may appear anywhere; ``error`` fails the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from mediasrv.providers.llm.messages import (
    AnthropicEvent,
    Chunk,
    Done,
    LLMEvent,
    StreamFailure,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallFragment,
    Usage,
)
from mediasrv.providers.llm.sse import SSEEvent

_CHUNK_DECODER: Final = msgspec.json.Decoder(Chunk)
_ANTHROPIC_DECODER: Final = msgspec.json.Decoder(AnthropicEvent)

# Anthropic stop_reason -> OpenAI finish_reason (Anthropic "Handling stop reasons"; OpenAI chunk docs).
_STOP_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}

# Error types worth retrying: OpenAI server_error / rate limits, Anthropic api_error / overloaded_error.
RETRYABLE_ERROR_KINDS: Final = frozenset(
    {"server_error", "rate_limit_exceeded", "rate_limit_error", "api_error", "overloaded_error", "timeout"}
)


class _OpenCall:
    __slots__ = ("index", "id", "name", "parts")

    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.parts: list[str] = []

    def finished(self) -> ToolCall:
        return ToolCall(index=self.index, id=self.id, name=self.name, arguments_json="".join(self.parts))


class OpenAIAssembler:
    """Assembles ``chat.completion.chunk`` payloads (choice 0) into LLM events.

    Feed either raw ``data:`` payloads (:meth:`receive_json`), decoded :class:`Chunk` Structs
    (:meth:`receive_chunk`) or already-typed fields (:meth:`receive_delta`, :meth:`receive_usage`, used by
    the SDK shell), then call :meth:`events_received`. Call :meth:`receive_end` when the stream ends.
    """

    def __init__(self) -> None:
        self._events: list[LLMEvent] = []
        self._calls: list[_OpenCall] = []
        self._open: dict[int, _OpenCall] = {}
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._ended = False
        self.failure: StreamFailure | None = None

    def receive_json(self, data: bytes | str) -> None:
        """Feed one SSE ``data`` payload (not ``[DONE]``)."""
        if self.failure is not None or self._ended:
            return
        try:
            chunk = _CHUNK_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.failure = StreamFailure(kind="protocol", message=f"bad chunk: {exc}", retryable=False)
            return
        self.receive_chunk(chunk)

    def receive_chunk(self, chunk: Chunk) -> None:
        """Feed one decoded chunk; a top-level ``error`` fails the stream (docs/providers.md 5.2)."""
        if chunk.error is not None:
            kind = chunk.error.type or str(chunk.error.code or "error")
            self.failure = StreamFailure(
                kind=kind,
                message=chunk.error.message or "error in stream",
                retryable=kind in RETRYABLE_ERROR_KINDS,
            )
            return
        for choice in chunk.choices:
            if choice.index == 0:
                delta = choice.delta
                self.receive_delta(delta.content, delta.tool_calls or (), choice.finish_reason)
        if chunk.usage is not None:
            self.receive_usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)

    def receive_delta(
        self, content: str | None, tool_calls: Sequence[ToolCallFragment], finish_reason: str | None
    ) -> None:
        """Feed the fields of ``choices[0]``: text, tool-call fragments and the finish reason."""
        if self.failure is not None or self._ended:
            return
        if content:
            self._events.append(TextDelta(content))
        for fragment in tool_calls:
            self._tool_fragment(fragment)
        if finish_reason is not None and self._finish_reason is None:
            self._finish_reason = finish_reason
            self._flush_calls()

    def receive_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Feed the ``usage`` of the final chunk."""
        self._usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def receive_end(self) -> None:
        """The stream ended (``[DONE]`` or end of body): emits pending tool calls and :class:`Done`."""
        if self.failure is not None or self._ended:
            return
        self._flush_calls()
        self._ended = True
        self._events.append(
            Done(finish_reason=self._finish_reason, usage=self._usage, truncated=self._finish_reason is None)
        )

    def events_received(self) -> list[LLMEvent]:
        """Return the events assembled since the last call (and forget them)."""
        events, self._events = self._events, []
        return events

    def _tool_fragment(self, fragment: ToolCallFragment) -> None:
        call = self._open.get(fragment.index)
        if call is None or (fragment.id and call.id and fragment.id != call.id):
            name = fragment.function.name if fragment.function and fragment.function.name else ""
            call = _OpenCall(fragment.index, fragment.id or f"call_{len(self._calls)}", name)
            self._open[fragment.index] = call
            self._calls.append(call)
        elif fragment.function is not None and fragment.function.name and not call.name:
            call.name = fragment.function.name
        piece = fragment.function.arguments if fragment.function is not None else None
        if piece:
            call.parts.append(piece)
        self._events.append(
            ToolCallDelta(index=call.index, id=call.id, name=call.name, arguments_delta=piece or "")
        )

    def _flush_calls(self) -> None:
        self._events.extend(call.finished() for call in self._calls)
        self._calls.clear()
        self._open.clear()


class AnthropicAssembler:
    """Assembles Anthropic Messages stream events into LLM events.

    Feed each :class:`SSEEvent` from :class:`~mediasrv.providers.llm.sse.SSEParser` to :meth:`receive_event`,
    then call :meth:`events_received`; call :meth:`receive_end` at end of body.
    """

    def __init__(self) -> None:
        self._events: list[LLMEvent] = []
        self._blocks: dict[int, _OpenCall] = {}
        self._tool_count = 0
        self._stop_reason: str | None = None
        self._input_tokens = 0
        self._output_tokens = 0
        self._ended = False
        self.failure: StreamFailure | None = None

    def receive_event(self, sse: SSEEvent) -> None:
        """Feed one SSE event (the ``data`` JSON's ``type`` is authoritative; ``event:`` repeats it)."""
        if self.failure is not None or self._ended:
            return
        try:
            event = _ANTHROPIC_DECODER.decode(sse.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.failure = StreamFailure(kind="protocol", message=f"bad event: {exc}", retryable=False)
            return
        kind = event.type
        if kind == "content_block_delta":
            self._block_delta(event)
        elif kind == "content_block_start":
            block = event.content_block
            if block is not None and block.type == "tool_use":
                # ToolCall.index counts tool calls (as OpenAI's does), not content blocks
                opened = _OpenCall(self._tool_count, block.id, block.name)
                self._tool_count += 1
                self._blocks[event.index] = opened
                self._events.append(
                    ToolCallDelta(index=opened.index, id=opened.id, name=opened.name, arguments_delta="")
                )
            elif block is not None and block.type == "text" and block.text:
                self._events.append(TextDelta(block.text))
        elif kind == "content_block_stop":
            call = self._blocks.pop(event.index, None)
            if call is not None:
                if not call.parts:
                    call.parts.append("{}")  # a tool with no input streams no input_json_delta at all
                self._events.append(call.finished())
        elif kind in ("message_start", "message_delta"):
            self._message_fields(event)
        elif kind == "message_stop":
            self._finish(truncated=False)
        elif kind == "error":
            error = event.error
            err_kind = error.type if error is not None else "error"
            message = error.message if error is not None else "error in stream"
            self.failure = StreamFailure(
                kind=err_kind, message=message, retryable=err_kind in RETRYABLE_ERROR_KINDS
            )
        # "ping" and unknown event types are ignored ("handle unknown event types gracefully").

    def receive_end(self) -> None:
        """The body ended; without ``message_stop`` this emits a truncated :class:`Done`."""
        if self.failure is None and not self._ended:
            self._finish(truncated=True)

    def events_received(self) -> list[LLMEvent]:
        """Return the events assembled since the last call (and forget them)."""
        events, self._events = self._events, []
        return events

    def _block_delta(self, event: AnthropicEvent) -> None:
        delta = event.delta
        if delta is None:
            return
        if delta.type == "text_delta":
            if delta.text:
                self._events.append(TextDelta(delta.text))
        elif delta.type == "input_json_delta":
            call = self._blocks.get(event.index)
            if call is not None and delta.partial_json:
                call.parts.append(delta.partial_json)
                self._events.append(
                    ToolCallDelta(
                        index=call.index, id=call.id, name=call.name, arguments_delta=delta.partial_json
                    )
                )

    def _message_fields(self, event: AnthropicEvent) -> None:
        usage = event.usage or (event.message.usage if event.message is not None else None)
        if usage is not None:
            if usage.input_tokens is not None:
                self._input_tokens = usage.input_tokens
            if usage.output_tokens is not None:
                self._output_tokens = usage.output_tokens  # cumulative in message_delta
        if event.delta is not None and event.delta.stop_reason is not None:
            self._stop_reason = event.delta.stop_reason

    def _finish(self, *, truncated: bool) -> None:
        self._ended = True
        reason = (
            None if self._stop_reason is None else _STOP_REASONS.get(self._stop_reason, self._stop_reason)
        )
        usage = Usage(prompt_tokens=self._input_tokens, completion_tokens=self._output_tokens)
        self._events.append(Done(finish_reason=reason, usage=usage, truncated=truncated or reason is None))
