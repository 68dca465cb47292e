"""TurnPlanner: turns a flow state and the caller's utterance into the LLM requests of one turn.

Theory of operation
-------------------
The old platform ran variable extraction, a mandatory-variable reprompt, a transition check and the
reply as up to four sequential LLM calls. Here a user turn costs **the reply plus at most one extra
call**, and the extra call is never in front of the reply:

``parallel`` (default)
    The reply streams at once, as plain text, from the current node's prompt. One *side call* runs
    concurrently with it: a strict ``json_schema`` named ``extraction`` (``{"vars"}``), ``transition``
    (``{"next"}``) or ``flow`` (both). When it lands, :meth:`TurnPlanner.finish_side` feeds the flow,
    which may advance; if the node it enters speaks a fixed text (ending, transfer, scripted node) while
    the reply still streams, the flow answers :class:`~mediasrv.agent.flow.ReplaceReply`. Otherwise the
    next turn uses the new node.

``merged``
    One call only: the reply itself returns ``{"say": ..., "vars": {...}, "next": ...}`` (``say`` first,
    so :class:`~mediasrv.providers.llm.SayExtractor` streams it to the TTS before the rest exists), and
    :meth:`TurnPlanner.finish_reply` feeds ``vars``/``next`` to the flow when the stream ends.

Trade-off. ``parallel`` keeps the reply plain text (no JSON escaping in the spoken words, provider
independent: the side call can go to a cheaper model) and its TTFT is the plain reply's; it pays a
second request (prompt tokens twice, a little rate limit) and, when the side call lands after the reply
has begun, the reply was written from the old node (hence ``ReplaceReply`` for fixed-speech nodes).
``merged`` pays no second request and the reply knows the extraction it made, but its first spoken word
waits behind ``{"say": "`` (a few tokens), the turn is only settled when ``vars``/``next`` have streamed
after the spoken text, strict JSON mode may add provider-side latency, and ordered keys are unconfirmed
on non-OpenAI backends (``docs/providers.md`` 5.3).

Rules
-----
1. A turn plan holds at most one call besides the reply (:attr:`TurnPlan.calls`).
2. A mandatory-variable reprompt is never a call: the reply carries the instruction (it is a
   :class:`~mediasrv.agent.flow.Reprompt` turn) whenever the node still misses mandatory values.
3. Extraction is skipped when the utterance cannot hold any variable the node wants (:func:`can_hold`):
   an acknowledgement ("yes", "okay") holds only a boolean, a number or phone needs digits or number
   words, a date needs digits or a date word, an email needs ``@`` or "at ... dot".
4. Transition choices are cached per (node, normalised utterance) in :class:`TransitionCache`; a hit
   needs no call, and a hit that leads to a fixed-speech node needs no reply either.
5. Requests are built here, as the exact ``messages``/``response_format``/``max_tokens``/``purpose``
   the LLM clients take; ``purpose`` is ``reply``, ``extraction``, ``transition`` or ``flow``. A side
   call that extracts is tagged ``extraction`` (it is the longer job), one that only chooses is tagged
   ``transition``; the merged reply is tagged ``flow``.
6. Pure and synchronous, like the flow: nothing here awaits or reads a clock. A planner holds only the
   transition cache, so one planner may serve every call of an agent.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from mediasrv.agent import prompts
from mediasrv.agent.clauses import normalise
from mediasrv.agent.config import AgentConfig, Transition, Variable
from mediasrv.agent.flow import STAY, Action, CallFlow, FlowState, Reply, Reprompt
from mediasrv.agent.prompts import ConversationMemory, Message

if TYPE_CHECKING:
    from mediasrv.providers.llm.stream import LLMClient, LLMStream

logger = logging.getLogger(__name__)

Strategy = Literal["parallel", "merged"]
SAY_FIELD: Final = "say"
SIDE_MAX_TOKENS: Final = 160
CACHE_SIZE: Final = 1024

ACKNOWLEDGEMENTS: Final = frozenset(
    "yes yeah yep yup ya no nope nah ok okay sure right alright fine great good cool perfect "
    "thanks thank you please uh huh um hmm mhm mm oh ah got it i see correct exactly hello hi hey "
    "that's that is all wait so well".split()
)
NUMBER_WORDS: Final = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
    "thousand million double triple couple dozen half".split()
)
DATE_WORDS: Final = frozenset(
    "today tomorrow tonight yesterday week weekend month year morning afternoon evening next "
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june "
    "july august september october november december jan feb mar apr jun jul aug sep sept oct nov dec "
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth twentieth thirtieth".split()
)
_DIGIT: Final = re.compile(r"\d")
_ORDINAL: Final = re.compile(r"\b\d{1,2}(st|nd|rd|th)\b|\w+(teenth|tieth|first|second|third)\b")


def _words(utterance: str) -> list[str]:
    return normalise(utterance).replace("-", " ").split()


def is_acknowledgement(utterance: str) -> bool:
    """True for a short reply made only of acknowledgement/filler words ("yes", "okay thanks")."""
    words = _words(utterance)
    return len(words) <= 4 and all(w in ACKNOWLEDGEMENTS for w in words)


def can_hold(utterance: str, variable: Variable) -> bool:
    """Cheap test: could ``utterance`` state a value for ``variable``? (False means: skip extraction.)"""
    words = _words(utterance)
    if not words:
        return False
    if variable.type == "boolean":
        return True
    if is_acknowledgement(utterance):
        return False
    has_digit = bool(_DIGIT.search(utterance))
    number_words = sum(1 for w in words if w in NUMBER_WORDS)
    if variable.type == "number":
        return has_digit or number_words > 0
    if variable.type == "phone":
        return has_digit or number_words >= 3
    if variable.type == "date":
        return has_digit or any(w in DATE_WORDS for w in words) or bool(_ORDINAL.search(utterance.lower()))
    if variable.type == "email":
        return "@" in utterance or ("at" in words and "dot" in words)
    return True


class TransitionCache:
    """Transition choices keyed by (node id, normalised utterance); least recently used entries go first.

    Args:
        size: entries kept.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, node_id: str, utterance: str) -> str | None:
        """The cached choice, or None (counts hits and misses)."""
        key = (node_id, normalise(utterance))
        choice = self._entries.get(key)
        if choice is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return choice

    def put(self, node_id: str, utterance: str, choice: str) -> None:
        """Remember a choice made by the LLM."""
        key = (node_id, normalise(utterance))
        self._entries[key] = choice
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class LLMRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One LLM call, as ``LLMClient.stream`` takes it (see :meth:`send`)."""

    purpose: str
    messages: list[Message]
    response_format: dict[str, object] | None = None
    max_tokens: int = 256
    temperature: float | None = None

    def send(self, client: LLMClient) -> LLMStream:
        """Start the call on ``client`` now (needs a running loop; the shell calls this)."""
        return client.stream(
            self.messages,
            response_format=self.response_format,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            purpose=self.purpose,
        )


class TurnPlan(msgspec.Struct, kw_only=True):
    """What to do for one user turn.

    Attributes:
        turn_id: pass it back with the results.
        node_id: the node the reply was written for.
        strategy: ``parallel`` or ``merged``.
        reply: stream at once into the TTS (None: a fixed text from :attr:`actions` answers instead).
        say_field: when set (merged), the reply streams JSON: feed its text to ``SayExtractor(say_field)``.
        side: start concurrently with the reply (parallel only), or None.
        extract: variables asked for; choose: whether a transition choice was asked.
        cached_choice: the transition choice taken from the cache, if any.
        missing: mandatory variables the reply asks for (a reprompt turn when not empty).
        actions: flow actions to perform now (a cached transition of a committed turn).
    """

    turn_id: int
    node_id: str
    utterance: str
    strategy: Strategy
    reply: LLMRequest | None
    say_field: str | None = None
    side: LLMRequest | None = None
    extract: tuple[str, ...] = ()
    choose: bool = False
    cached_choice: str | None = None
    missing: tuple[str, ...] = ()
    actions: list[Action] = []

    @property
    def calls(self) -> list[LLMRequest]:
        """Every LLM call of the plan (reply first)."""
        return [r for r in (self.reply, self.side) if r is not None]

    @property
    def extra_calls(self) -> int:
        """LLM calls besides the reply (0 or 1)."""
        return int(self.side is not None)


class TurnPlanner:
    """Plans turns for one agent (see the module docstring).

    Args:
        agent: the agent.
        strategy: default from ``agent.flow_strategy``.
        cache: share one :class:`TransitionCache` between planners of the same agent, if wanted.
    """

    def __init__(
        self, agent: AgentConfig, *, strategy: Strategy | None = None, cache: TransitionCache | None = None
    ) -> None:
        self.agent = agent
        self.strategy: Strategy = strategy or agent.flow_strategy
        self.cache = cache if cache is not None else TransitionCache()

    def plan_turn(
        self,
        flow: CallFlow,
        utterance: str,
        memory: ConversationMemory,
        *,
        committed: bool = True,
        knowledge: str = "",
    ) -> TurnPlan:
        """Plan the caller's turn and tell the flow it began.

        Start :attr:`TurnPlan.reply` and :attr:`TurnPlan.side` at once, perform :attr:`TurnPlan.actions`;
        then call :meth:`finish_reply` when the reply stream ends and :meth:`finish_side` when the side
        call ends. Record the utterance in ``memory`` after the turn is committed (it is not yet there).

        Args:
            flow: the call's flow (must not be finished).
            utterance: what the caller said (final or speculative text).
            memory: the call's history.
            committed: False for a speculative turn (then ``flow.commit_turn``/``abandon_turn`` later).
            knowledge: knowledge-base text retrieved for this utterance.

        Raises:
            FlowError: the flow cannot take a turn now (e.g. it finished).
        """
        node = flow.node
        talking = node.type == "conversation" and flow.state is not FlowState.WEBHOOK
        wanted = [s for s in self._node_vars(flow) if can_hold(utterance, s)] if talking else []
        choices = flow.choices() if talking else []
        cached = self.cache.get(node.id, utterance) if choices else None
        if cached is not None and cached != STAY and flow.allowed(cached) and flow.speaks_fixed_text(cached):
            return self._fixed_speech_plan(flow, utterance, cached, committed=committed)
        ask = choices if cached is None else []
        needs_result = bool(wanted) or bool(ask)
        turn_id = flow.begin_turn(committed=committed, expects_result=needs_result, choice=cached)
        actions = flow.take_actions(turn_id)  # a cached choice to a prompt node: reply from the new node
        missing = flow.missing()
        system = self._reply_system(flow, memory, knowledge)
        merged = self.strategy == "merged" and needs_result
        if merged:
            system += "\n\n" + prompts.merged_instruction(wanted, ask)
        reply = self._reply_request(
            system, memory, utterance, wanted if merged else [], ask if merged else []
        )
        side = None if merged or not needs_result else self._side_request(memory, utterance, wanted, ask)
        return TurnPlan(
            turn_id=turn_id,
            node_id=flow.node.id,
            utterance=utterance,
            strategy=self.strategy,
            reply=reply,
            say_field=SAY_FIELD if merged else None,
            side=side,
            extract=tuple(v.name for v in wanted),
            choose=bool(ask),
            cached_choice=cached,
            missing=missing,
            actions=actions,
        )

    def request_for(
        self, flow: CallFlow, action: Reply | Reprompt, memory: ConversationMemory, *, knowledge: str = ""
    ) -> LLMRequest:
        """The reply request for a :class:`Reply`/:class:`Reprompt` action (a node entered after a webhook).

        Call ``flow.on_reply_done()`` (no turn id) when it has streamed.
        """
        system = self._reply_system(flow, memory, knowledge)
        messages: list[Message] = [{"role": "system", "content": system}, *memory.window()]
        return LLMRequest(
            purpose="reply",
            messages=messages,
            max_tokens=self.agent.llm.max_tokens,
            temperature=self.agent.llm.temperature,
        )

    def finish_reply(self, flow: CallFlow, plan: TurnPlan, text: str | None) -> list[Action]:
        """The turn's reply stream ended (``text``: all its text; None when it failed).

        Returns:
            Flow actions (merged mode: those of the ``vars``/``next`` it carried).
        """
        actions = flow.on_reply_done(plan.turn_id)
        if plan.say_field is None:
            return actions
        values, choice = self._parse(plan, text)
        return actions + flow.on_flow_result(plan.turn_id, values=values, choice=choice)

    def finish_side(self, flow: CallFlow, plan: TurnPlan, text: str | None) -> list[Action]:
        """The side call ended (``text``: its JSON; None when it failed or was cancelled).

        Returns:
            Flow actions (e.g. ``ReplaceReply`` then ``HangUp``).
        """
        values, choice = self._parse(plan, text)
        return flow.on_flow_result(plan.turn_id, values=values, choice=choice)

    def spoken_text(self, plan: TurnPlan, text: str) -> str:
        """What the reply said: the text itself, or the ``say`` field of a merged reply."""
        if plan.say_field is None:
            return text
        try:
            decoded = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return ""
        spoken = decoded.get(plan.say_field) if isinstance(decoded, dict) else None
        return spoken if isinstance(spoken, str) else ""

    # -------------------------------------------------------------- internals

    def _fixed_speech_plan(self, flow: CallFlow, utterance: str, choice: str, *, committed: bool) -> TurnPlan:
        """A cache hit that leads to a script/ending/transfer: no LLM call at all (rule 4)."""
        node_id = flow.node.id
        turn_id = flow.begin_turn(committed=committed, reply=False, choice=choice)
        return TurnPlan(
            turn_id=turn_id,
            node_id=node_id,
            utterance=utterance,
            strategy=self.strategy,
            reply=None,
            cached_choice=choice,
            actions=flow.take_actions(turn_id),
        )

    def _node_vars(self, flow: CallFlow) -> list[Variable]:
        return [flow.variable_specs[name] for name in flow.node.variables]

    def _reply_system(self, flow: CallFlow, memory: ConversationMemory, knowledge: str) -> str:
        missing = [flow.variable_specs[name] for name in flow.missing()]
        return prompts.reply_system_text(
            self.agent.system_prompt,
            flow.node.prompt,
            flow.variables,
            memory.summary(),
            missing=missing,
            knowledge=knowledge,
        )

    def _reply_request(
        self,
        system: str,
        memory: ConversationMemory,
        utterance: str,
        wanted: Sequence[Variable],
        ask: Sequence[Transition],
    ) -> LLMRequest:
        messages: list[Message] = [
            {"role": "system", "content": system},
            *memory.window(),
            {"role": "user", "content": utterance},
        ]
        if not wanted and not ask:
            return LLMRequest(
                purpose="reply",
                messages=messages,
                max_tokens=self.agent.llm.max_tokens,
                temperature=self.agent.llm.temperature,
            )
        schema = prompts.flow_schema(wanted, ask, say=True)
        return LLMRequest(
            purpose="flow",
            messages=messages,
            response_format=prompts.json_schema_format("flow", schema),
            max_tokens=self.agent.llm.max_tokens + SIDE_MAX_TOKENS,
            temperature=self.agent.llm.temperature,
        )

    def _side_request(
        self,
        memory: ConversationMemory,
        utterance: str,
        wanted: Sequence[Variable],
        ask: Sequence[Transition],
    ) -> LLMRequest:
        name = "flow" if wanted and ask else "extraction" if wanted else "transition"
        recent = memory.window()[-prompts.SIDE_WINDOW_MESSAGES :]
        messages: list[Message] = [
            {"role": "system", "content": prompts.side_system_text(wanted, ask)},
            *recent,
            {"role": "user", "content": utterance},
        ]
        schema = prompts.flow_schema(wanted, ask, say=False)
        return LLMRequest(
            purpose="extraction" if wanted else "transition",
            messages=messages,
            response_format=prompts.json_schema_format(name, schema),
            max_tokens=SIDE_MAX_TOKENS,
            temperature=0.0,
        )

    def _parse(self, plan: TurnPlan, text: str | None) -> tuple[dict[str, object] | None, str | None]:
        if text is None:
            return None, None
        try:
            decoded = msgspec.json.decode(text)
        except msgspec.DecodeError:
            logger.debug("planner: turn %d result is not JSON: %.80r", plan.turn_id, text)
            return None, None
        if not isinstance(decoded, dict):
            return None, None
        raw_vars = decoded.get("vars")
        values = (
            {k: v for k, v in raw_vars.items() if k in plan.extract}
            if isinstance(raw_vars, Mapping)
            else None
        )
        raw_next = decoded.get("next")
        choice = raw_next if plan.choose and isinstance(raw_next, str) else None
        if choice is not None:
            self.cache.put(plan.node_id, plan.utterance, choice)
        return values, choice
