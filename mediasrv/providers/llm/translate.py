"""Pure translation of an OpenAI-style chat request into an Anthropic Messages request body.

Rules (Anthropic Messages API reference, https://docs.anthropic.com/en/api/messages):

- ``system``/``developer`` messages move to the top-level ``system`` string (Anthropic has no system role).
- An assistant message's ``tool_calls`` become ``tool_use`` content blocks (``input`` is the parsed
  arguments object); ``tool`` messages become ``tool_result`` blocks inside a ``user`` message.
- Consecutive messages of the same role are merged into one message with several content blocks, since
  the API expects user and assistant turns to alternate.
- OpenAI function tools become ``{"name", "description", "input_schema"}``; ``tool_choice`` maps
  ``auto``->``auto``, ``required``->``any``, ``none``->``none``, a named function->``{"type":"tool"}``.
- ``response_format`` has no Messages equivalent here: its schema is appended to ``system`` as an
  instruction, so the reply is JSON text in ``text_delta`` events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from mediasrv.providers.llm.messages import JSONMap


def _as_map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _tool_use_blocks(message: JSONMap) -> list[dict[str, object]]:
    blocks: list[dict[str, object]] = []
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = _as_map(_as_map(call).get("function"))
        raw = function.get("arguments")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) and raw else {}
        except json.JSONDecodeError:
            arguments = {}
        blocks.append(
            {
                "type": "tool_use",
                "id": _as_map(call).get("id"),
                "name": function.get("name"),
                "input": arguments,
            }
        )
    return blocks


def _content_blocks(message: JSONMap) -> list[dict[str, object]]:
    role = message.get("role")
    content = message.get("content")
    if role == "tool":
        text = content if isinstance(content, str) else json.dumps(content)
        return [{"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": text}]
    blocks: list[dict[str, object]] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        blocks.extend(dict(_as_map(part)) for part in content)
    if role == "assistant":
        blocks.extend(_tool_use_blocks(message))
    return blocks


def translate_messages(messages: Sequence[JSONMap]) -> tuple[str, list[dict[str, object]]]:
    """Split OpenAI-style messages into Anthropic's ``system`` text and alternating ``messages``."""
    system: list[str] = []
    out: list[dict[str, object]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            content = message.get("content")
            system.append(content if isinstance(content, str) else json.dumps(content))
            continue
        anthropic_role = "assistant" if role == "assistant" else "user"
        blocks = _content_blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == anthropic_role:
            previous = out[-1]["content"]
            assert isinstance(previous, list)
            previous.extend(blocks)
        else:
            out.append({"role": anthropic_role, "content": blocks})
    return "\n\n".join(system), out


def translate_tools(tools: Sequence[JSONMap]) -> list[dict[str, object]]:
    """OpenAI ``{"type":"function","function":{...}}`` tools to Anthropic tools with ``input_schema``."""
    out: list[dict[str, object]] = []
    for tool in tools:
        function = _as_map(tool.get("function")) if tool.get("type") == "function" else tool
        schema = (
            function.get("parameters") or function.get("input_schema") or {"type": "object", "properties": {}}
        )
        entry: dict[str, object] = {"name": function.get("name"), "input_schema": schema}
        if function.get("description"):
            entry["description"] = function["description"]
        out.append(entry)
    return out


def translate_tool_choice(choice: object) -> dict[str, object] | None:
    """OpenAI ``tool_choice`` to Anthropic's; None leaves the server default (``auto``)."""
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    name = _as_map(_as_map(choice).get("function")).get("name")
    return {"type": "tool", "name": name} if name else None


def build_body(
    model: str,
    messages: Sequence[JSONMap],
    *,
    tools: Sequence[JSONMap] | None,
    tool_choice: object,
    response_format: JSONMap | None,
    max_tokens: int,
    temperature: float | None,
) -> dict[str, object]:
    """Build the complete ``POST /v1/messages`` body with ``stream: true``."""
    system, converted = translate_messages(messages)
    if response_format is not None and response_format.get("type") in ("json_schema", "json_object"):
        schema = _as_map(response_format.get("json_schema")).get("schema")
        rule = "Reply with one JSON object only, no prose."
        if schema is not None:
            rule += " It must match this JSON Schema, keys in this order: " + json.dumps(schema)
        system = f"{system}\n\n{rule}" if system else rule
    body: dict[str, object] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": converted,
        "stream": True,
    }
    if system:
        body["system"] = system
    if temperature is not None:
        body["temperature"] = temperature
    if tools:
        body["tools"] = translate_tools(tools)
        anthropic_choice = translate_tool_choice(tool_choice)
        if anthropic_choice is not None:
            body["tool_choice"] = anthropic_choice
    return body
