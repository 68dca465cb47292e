"""Prompt text and JSON schemas for replies, extraction and transitions; the bounded conversation memory.

Theory of operation: every LLM request of a turn is built from three small parts, so the prompt stays
the same size however long the call runs:

* the **system text**: the agent's system prompt, the current node's prompt, the values collected so
  far (one line), a **running summary** of the turns that left the window, and optional knowledge
  chunks handed in by the caller of the builders;
* the **window**: the last ``history_turns`` exchanges, verbatim (:class:`ConversationMemory`);
* the caller's utterance.

Rules:

1. The summary is built without an LLM: when an exchange leaves the window, the caller's words are
   kept as a clipped quote (at most :data:`SUMMARY_QUOTE_WORDS` words, the newest
   :data:`SUMMARY_QUOTES` quotes) and the count of older exchanges is kept as the digest. Collected
   variables are not summarised: they are listed in full in the system text.
2. The side call (extraction/transition) sees only the last :data:`SIDE_WINDOW_MESSAGES` messages: it
   judges the latest utterance, it does not need the whole call.
3. Schemas are strict (OpenAI ``strict: true``: every property required, no extra properties, optional
   values nullable), and the spoken field ``say`` is the first property of the merged schema so that
   it streams first (``docs/providers.md`` 5.3).
4. Values cross the LLM boundary here too: :func:`coerce` types what a model extracted, :func:`render`
   fills ``{name}`` placeholders of scripts.
5. The transition enum always starts with ``stay``: a model (or the emulator) that is unsure picks the
   first value, and staying is the safe default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from mediasrv.agent.config import Transition, Variable

SUMMARY_QUOTES: Final = 6
SUMMARY_QUOTE_WORDS: Final = 14
SIDE_WINDOW_MESSAGES: Final = 4
STAY_MEANING: Final = "none of the conditions below holds yet"

_JSON_TYPES: Final[Mapping[str, str]] = {
    "string": "string",
    "date": "string",
    "phone": "string",
    "email": "string",
    "number": "number",
    "boolean": "boolean",
}
_FORMAT_HINTS: Final[Mapping[str, str]] = {
    "date": " (as said, or YYYY-MM-DD)",
    "phone": " (digits only)",
    "email": " (lower case)",
    "number": "",
    "boolean": " (true/false)",
    "string": "",
}

_PLACEHOLDER: Final = re.compile(r"\{(\w+)\}")
_SPACE_BEFORE_PUNCT: Final = re.compile(r"\s+([,.!?])")
_EMPTY_CLAUSE: Final = re.compile(r",([.!?])")

VarValue = str | int | float | bool | None
"""A variable's value (JSON scalar)."""

Message = dict[str, object]
"""One OpenAI-style chat message, as the LLM clients take it."""


class Line(msgspec.Struct, frozen=True):
    """One line of the conversation: who spoke and the words the other side got.

    Attributes:
        role: ``user`` (the caller, as committed) or ``assistant`` (the agent, as heard: after
            a barge-in only the words played before it).
    """

    role: Literal["user", "assistant"]
    text: str


class ConversationMemory:
    """The call's one history: every line said, as heard; a verbatim window plus a running summary.

    Both kinds of prompt read it (a plain reply: :meth:`window`; a call-flow turn: window and
    :meth:`summary`), the echo filter reads the agent's recent lines from it. Lines are added
    when they are final: the caller's when the turn is committed, the agent's when its
    utterance was played to the end, cut by a barge-in, or dropped.

    Args:
        window_turns: exchanges (a caller line plus the agent's answer) kept verbatim.
    """

    def __init__(self, window_turns: int = 12) -> None:
        self.window_turns = max(1, window_turns)
        self._lines: list[Line] = []
        self._quotes: list[str] = []
        self._older_exchanges = 0

    def add_user(self, text: str) -> None:
        """Record what the caller said (the committed turn text)."""
        self._append("user", text)

    def add_agent(self, text: str) -> None:
        """Record what the agent said (after a barge-in: only the words the caller heard)."""
        self._append("assistant", text)

    @property
    def lines(self) -> list[Line]:
        """The lines in the window, oldest first (consecutive lines of one speaker merged)."""
        return list(self._lines)

    def window(self) -> list[Message]:
        """The verbatim messages, oldest first (new dicts: a request may not change the memory)."""
        return [{"role": line.role, "content": line.text} for line in self._lines]

    def recent_agent(self, lines: int) -> list[str]:
        """The agent's words among the last ``lines`` lines (the echo filter's reference)."""
        return [line.text for line in self._lines[-lines:] if line.role == "assistant"]

    def summary(self) -> str:
        """One short paragraph about the exchanges that left the window ("" when none did)."""
        if not self._older_exchanges:
            return ""
        said = "; ".join(f'"{q}"' for q in self._quotes)
        return f"{self._older_exchanges} earlier exchanges. The caller said: {said}."

    def _append(self, role: Literal["user", "assistant"], text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self._lines and self._lines[-1].role == role:
            self._lines[-1] = Line(role, f"{self._lines[-1].text} {text}")
        else:
            self._lines.append(Line(role, text))
        self._trim()

    def _trim(self) -> None:
        limit = 2 * self.window_turns
        while len(self._lines) > limit:
            dropped = self._lines.pop(0)
            if dropped.role == "user":
                self._older_exchanges += 1
                self._quotes.append(_clip(dropped.text, SUMMARY_QUOTE_WORDS))
                del self._quotes[:-SUMMARY_QUOTES]


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def describe_values(values: Mapping[str, object]) -> str:
    """``name=value`` pairs on one line (empty when nothing is known)."""
    return ", ".join(f"{k}={v}" for k, v in values.items() if v is not None)


def reply_system_text(
    system_prompt: str,
    node_prompt: str,
    values: Mapping[str, object],
    summary: str,
    *,
    missing: Sequence[Variable] = (),
    knowledge: str = "",
) -> str:
    """The system message of a reply (plain text or merged).

    Args:
        system_prompt: the agent's system prompt.
        node_prompt: the current node's prompt ("" in simple mode).
        values: the variables collected so far.
        summary: :meth:`ConversationMemory.summary`.
        missing: mandatory variables still missing: adds the reprompt instruction.
        knowledge: retrieved knowledge-base text for this turn.
    """
    parts = [system_prompt.strip()]
    if node_prompt.strip():
        parts.append(f"Current step: {node_prompt.strip()}")
    known = describe_values(values)
    if known:
        parts.append(f"Known details: {known}.")
    if summary:
        parts.append(f"Earlier in this call: {summary}")
    if knowledge.strip():
        parts.append(f"Reference information:\n{knowledge.strip()}")
    if missing:
        wanted = "; ".join(f"{v.name} ({v.description or v.type})" for v in missing)
        parts.append(
            f"Still required: {wanted}. If the caller's last message does not give them, "
            "ask for them briefly, one or two at a time."
        )
    parts.append("You are speaking on the phone: answer in one or two short sentences, no lists or markup.")
    return "\n\n".join(parts)


def side_system_text(variables: Sequence[Variable], choices: Sequence[Transition]) -> str:
    """The system message of an extraction and/or transition call."""
    parts = ["You read a phone conversation and return JSON only."]
    if variables:
        lines = "\n".join(f"- {v.name}: {v.description or v.type}{_FORMAT_HINTS[v.type]}" for v in variables)
        parts.append(
            "In vars, give each detail the caller has stated (latest message first); null when not stated:\n"
            + lines
        )
    if choices:
        parts.append(
            "In next, choose the step the call should take after the caller's last message:\n"
            + (transition_menu(choices))
        )
    return "\n\n".join(parts)


def merged_instruction(variables: Sequence[Variable], choices: Sequence[Transition]) -> str:
    """What the merged reply must return, appended to the reply's system text."""
    parts = ['Return JSON only. Put what you say to the caller in "say" (plain spoken words).']
    if variables:
        lines = "\n".join(f"- {v.name}: {v.description or v.type}{_FORMAT_HINTS[v.type]}" for v in variables)
        parts.append("In vars, give each detail the caller has stated; null when not stated:\n" + lines)
    if choices:
        parts.append("In next, choose the next step:\n" + transition_menu(choices))
    return "\n".join(parts)


def transition_menu(choices: Sequence[Transition]) -> str:
    """``stay`` plus each option with its condition, one per line."""
    lines = [f"- stay: {STAY_MEANING}"]
    lines.extend(f"- {t.to}: {t.when}" for t in choices)
    return "\n".join(lines)


def vars_schema(variables: Sequence[Variable]) -> dict[str, object]:
    """Strict JSON schema of the ``vars`` object: one nullable property per variable."""
    props: dict[str, object] = {
        v.name: {"type": [_JSON_TYPES[v.type], "null"], "description": v.description or v.type}
        for v in variables
    }
    return {
        "type": "object",
        "properties": props,
        "required": [v.name for v in variables],
        "additionalProperties": False,
    }


def flow_schema(
    variables: Sequence[Variable], choices: Sequence[Transition], *, say: bool
) -> dict[str, object]:
    """Strict schema ``{"say"?, "vars"?, "next"?}``: ``say`` first, then what is asked."""
    props: dict[str, object] = {}
    if say:
        props["say"] = {"type": "string", "description": "what the agent says now"}
    if variables:
        props["vars"] = vars_schema(variables)
    if choices:
        options = ["stay", *dict.fromkeys(t.to for t in choices)]
        props["next"] = {"type": "string", "enum": options}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def json_schema_format(name: str, schema: Mapping[str, object]) -> dict[str, object]:
    """The ``response_format`` value for a strict named schema."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}


def render(template: str, variables: Mapping[str, VarValue]) -> str:
    """Fill ``{name}`` placeholders from the variables; an unknown one renders as nothing, and the space or
    comma left in front of the next punctuation mark goes with it ("Bye {name}!" -> "Bye!")."""

    def value(match: re.Match[str]) -> str:
        found = variables.get(match.group(1))
        return "" if found is None else str(found)

    text = " ".join(_PLACEHOLDER.sub(value, template).split())
    return _EMPTY_CLAUSE.sub(r"\1", _SPACE_BEFORE_PUNCT.sub(r"\1", text))


def coerce(variable: Variable, raw: object) -> VarValue:
    """A value as the variable's type wants it, or None when it is empty or does not fit."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if variable.type == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        return True if text in ("true", "yes") else False if text in ("false", "no") else None
    if variable.type == "number":
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | float):
            return raw
        try:
            number = float(str(raw).replace(",", ""))
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    return raw.strip() if isinstance(raw, str) else str(raw)
