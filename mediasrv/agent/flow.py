"""CallFlow: the sans-I/O call-flow engine (nodes, variables, transitions) of one call.

Theory of operation
-------------------
An agent is either in *simple mode* (no ``nodes``: one implicit conversation node, :data:`SIMPLE_NODE`,
that wants every agent variable and has no transitions) or in *call-flow mode* (``nodes`` and
``start_node``). :class:`CallFlow` holds the current node, the variables collected so far and the node
path. It never sees audio, never calls an LLM or a webhook and never reads a clock: its inputs are
*results* and its outputs are *actions* (frozen Structs) that the runner performs in order.

Inputs (each returns the list of actions to perform now):

* :meth:`CallFlow.start` once, when the call starts.
* :meth:`CallFlow.begin_turn` when a user turn is planned (the planner calls it, see
  :mod:`mediasrv.agent.planner`); :meth:`CallFlow.commit_turn` / :meth:`CallFlow.abandon_turn` when a
  speculative turn is confirmed or dropped.
* :meth:`CallFlow.on_flow_result` (and its halves :meth:`CallFlow.on_extraction` and
  :meth:`CallFlow.on_transition`) when the turn's extraction/transition result lands.
* :meth:`CallFlow.on_reply_done` when a reply's text is complete (its LLM stream ended, or a fixed text
  was handed to the TTS).
* :meth:`CallFlow.on_function_result` when a function node's webhook answered, failed or timed out.

Outputs: :class:`Say` (a fixed script), :class:`Reply` / :class:`Reprompt` (an LLM reply from the node's
prompt; the planner builds the request), :class:`CallWebhook`, :class:`Transfer`, :class:`HangUp` and
:class:`ReplaceReply` (the reply still streaming for a turn is wrong for the node just entered: cancel it;
the actions after it replace it).

Rules
-----
1. Every state change goes through :data:`TRANSITIONS` (state -> event -> state); a pair missing from the
   table raises :class:`~mediasrv.errors.FlowError`. Node entry is an event too (``ENTER_<type>``), so the
   node type decides the next state through the same table.
2. A result for a turn that is no longer current (superseded by a newer turn, or abandoned) is dropped:
   that is a race, not an impossible pair. A result for a speculative (uncommitted) turn is held and
   applied by :meth:`CallFlow.commit_turn`, so nothing a caller has not finished saying moves the flow.
3. Extraction is applied before the transition choice of the same result, so the mandatory check sees
   the new values.
4. Mandatory variables gate leaving a node: while any of the current node's mandatory variables is
   missing, a transition to a conversation or function node is refused (the flow stays, and the next
   reply is a :class:`Reprompt`, i.e. the same reply call with an instruction to ask for them). Ending
   and transfer nodes are always reachable: a caller who says goodbye or asks for a person is not held.
5. ``always`` transitions (``when`` is ``always`` or empty) need no LLM. A conversation node takes one
   once it has spoken (its reply or script is done) and its mandatory variables are present.
6. Function nodes never ask the LLM: on success the first transition whose ``when`` is ``always``,
   ``success`` or empty is taken; on failure or timeout, ``on_failure`` or the first ``failure``/``error``
   transition. The webhook's JSON object result is merged into the variables.
7. Entering a node: conversation with a script -> :class:`Say`; conversation with only a prompt -> nothing
   during a user turn (the next turn uses the new node) but a :class:`Reply`/:class:`Reprompt` after a
   webhook (the caller is waiting for the answer); function -> :class:`CallWebhook`; ending ->
   :class:`HangUp`; transfer -> :class:`Transfer`. When the entry speaks a fixed text while the turn's LLM
   reply is still streaming, :class:`ReplaceReply` comes first. A prompt node does not replace the reply:
   the reply already streaming answers the caller, and a function node lets it run as the filler.
8. Scripts may name variables as ``{name}``; unknown names render as nothing.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec

from mediasrv.agent.config import AgentConfig, Node, Transition, Variable
from mediasrv.agent.prompts import VarValue, coerce, render
from mediasrv.errors import ConfigError, FlowError

logger = logging.getLogger(__name__)


STAY: Final = "stay"
"""The transition choice meaning "remain in the current node"."""
SIMPLE_NODE: Final = "main"
"""Id of the implicit node of an agent without ``nodes`` (simple mode)."""
ALWAYS_WHEN: Final = frozenset({"", "always"})
SUCCESS_WHEN: Final = frozenset({"", "always", "success"})
FAILURE_WHEN: Final = frozenset({"failure", "error"})
FIXED_SPEECH_TYPES: Final = frozenset({"ending", "transfer"})
DEFAULT_GOODBYE: Final = "Thank you for calling. Goodbye!"


# --- actions ---------------------------------------------------------------------------------------------


class Say(msgspec.Struct, frozen=True, kw_only=True, tag="say"):
    """Speak a fixed text (a node's script); call :meth:`CallFlow.on_reply_done` (no turn id) when sent."""

    text: str


class Reply(msgspec.Struct, frozen=True, kw_only=True, tag="reply"):
    """Speak an LLM reply from ``node_id``'s prompt (build it with ``TurnPlanner.request_for``)."""

    node_id: str


class Reprompt(msgspec.Struct, frozen=True, kw_only=True, tag="reprompt"):
    """Like :class:`Reply`, with an instruction to ask for the ``missing`` mandatory variables."""

    node_id: str
    missing: tuple[str, ...]


class CallWebhook(msgspec.Struct, frozen=True, kw_only=True, tag="webhook"):
    """POST ``payload`` as JSON to ``url``, give up after ``timeout_s``, report with ``on_function_result``.

    ``url`` is the agent's ``webhooks[name]`` when the node names one, else the node's ``webhook`` itself.
    """

    node_id: str
    url: str
    payload: dict[str, object]
    timeout_s: float


class Transfer(msgspec.Struct, frozen=True, kw_only=True, tag="transfer"):
    """Say ``after_say`` (if any), then transfer the call to ``to``."""

    to: str
    after_say: str = ""


class HangUp(msgspec.Struct, frozen=True, kw_only=True, tag="hangup"):
    """Say ``after_say``, then hang up."""

    after_say: str


class ReplaceReply(msgspec.Struct, frozen=True, kw_only=True, tag="replace_reply"):
    """The reply streaming for ``turn_id`` is wrong for the node just entered: cancel it (LLM stream and
    unplayed audio). The actions that follow in the same list replace it."""

    turn_id: int
    node_id: str


Action = Say | Reply | Reprompt | CallWebhook | Transfer | HangUp | ReplaceReply


# --- the state machine -----------------------------------------------------------------------------------


class FlowState(enum.Enum):
    """Where the engine is."""

    NEW = "new"
    """Before :meth:`CallFlow.start`."""
    LISTENING = "listening"
    """At a conversation node, no user turn in flight."""
    TURN = "turn"
    """A user turn is in flight: its reply and/or its flow result are outstanding."""
    WEBHOOK = "webhook"
    """At a function node, waiting for the webhook."""
    FINISHED = "finished"
    """An ending or transfer node was entered; only the last reply may still finish."""


class FlowEvent(enum.Enum):
    """What moves the engine (derived from the inputs)."""

    START = "start"
    ENTER_CONVERSATION = "enter_conversation"
    ENTER_FUNCTION = "enter_function"
    ENTER_ENDING = "enter_ending"
    ENTER_TRANSFER = "enter_transfer"
    USER_TURN = "user_turn"
    COMMIT = "commit"
    ABANDON = "abandon"
    FLOW_RESULT = "flow_result"
    REPLY_DONE = "reply_done"
    SETTLE = "settle"
    """The current turn has its reply done and its result applied."""
    WEBHOOK_OK = "webhook_ok"
    WEBHOOK_FAILED = "webhook_failed"


S = FlowState
E = FlowEvent
_ENTER: Final[Mapping[FlowEvent, FlowState]] = {
    E.ENTER_CONVERSATION: S.LISTENING,
    E.ENTER_FUNCTION: S.WEBHOOK,
    E.ENTER_ENDING: S.FINISHED,
    E.ENTER_TRANSFER: S.FINISHED,
}
TRANSITIONS: Final[Mapping[FlowState, Mapping[FlowEvent, FlowState]]] = {
    S.NEW: {**_ENTER, E.START: S.NEW},
    S.LISTENING: {
        **_ENTER,
        E.USER_TURN: S.TURN,
        E.REPLY_DONE: S.LISTENING,
        # a turn begun at a function node outlives the webhook that moved the flow on:
        E.COMMIT: S.LISTENING,
        E.ABANDON: S.LISTENING,
    },
    S.TURN: {
        **_ENTER,
        E.ENTER_CONVERSATION: S.TURN,
        E.USER_TURN: S.TURN,
        E.COMMIT: S.TURN,
        E.ABANDON: S.LISTENING,
        E.FLOW_RESULT: S.TURN,
        E.REPLY_DONE: S.TURN,
        E.SETTLE: S.LISTENING,
    },
    S.WEBHOOK: {
        **_ENTER,
        E.USER_TURN: S.WEBHOOK,
        E.COMMIT: S.WEBHOOK,
        E.ABANDON: S.WEBHOOK,
        E.REPLY_DONE: S.WEBHOOK,
        E.WEBHOOK_OK: S.WEBHOOK,
        E.WEBHOOK_FAILED: S.WEBHOOK,
    },
    S.FINISHED: {E.REPLY_DONE: S.FINISHED},
}
"""state -> event -> next state. Every change of state goes through this table."""
del S, E


def next_state(state: FlowState, event: FlowEvent) -> FlowState:
    """Look up the table.

    Raises:
        FlowError: ``event`` is impossible in ``state``.
    """
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise FlowError(f"flow: no transition from {state.name} on {event.name}") from None


# --- validation ------------------------------------------------------------------------------------------


def flow_nodes(agent: AgentConfig) -> tuple[dict[str, Node], str]:
    """The agent's nodes by id and the start node id (simple mode: one implicit node).

    Raises:
        ConfigError: an unknown node id, a function node without webhook or failure path, a transfer
            node without ``transfer_to``, or an unknown variable name (the message names the field).
    """
    if not agent.nodes:
        node = Node(id=SIMPLE_NODE, variables=[v.name for v in agent.variables])
        return {SIMPLE_NODE: node}, SIMPLE_NODE
    nodes: dict[str, Node] = {}
    for i, node in enumerate(agent.nodes):
        if node.id in nodes or node.id == STAY:
            raise ConfigError(f"agent {agent.name}: nodes[{i}].id: duplicate or reserved id {node.id!r}")
        nodes[node.id] = node
    start = agent.start_node or agent.nodes[0].id
    if start not in nodes:
        raise ConfigError(f"agent {agent.name}: start_node: unknown node {start!r}")
    known_vars = {v.name for v in agent.variables}
    for i, node in enumerate(agent.nodes):
        _check_node(agent.name, i, node, nodes, known_vars)
    return nodes, start


def _check_node(agent: str, i: int, node: Node, nodes: Mapping[str, Node], known: set[str]) -> None:
    where = f"agent {agent}: nodes[{i}]"
    for j, edge in enumerate(node.transitions):
        if edge.to not in nodes:
            raise ConfigError(f"{where}.transitions[{j}].to: unknown node {edge.to!r}")
    for name in node.variables:
        if name not in known:
            raise ConfigError(f"{where}.variables: {name!r} is not declared in variables")
    if node.on_failure is not None and node.on_failure not in nodes:
        raise ConfigError(f"{where}.on_failure: unknown node {node.on_failure!r}")
    if node.type == "function":
        if not node.webhook:
            raise ConfigError(f"{where}.webhook: a function node needs a webhook")
        if _success_edge(node) is None:
            raise ConfigError(f"{where}.transitions: a function node needs an 'always'/'success' transition")
        if _failure_target(node) is None:
            raise ConfigError(f"{where}.on_failure: a function node needs a failure path")
    if node.type == "transfer" and not node.transfer_to:
        raise ConfigError(f"{where}.transfer_to: a transfer node needs a number or SIP URI")


def _success_edge(node: Node) -> Transition | None:
    return next((t for t in node.transitions if t.when.strip().lower() in SUCCESS_WHEN), None)


def _failure_target(node: Node) -> str | None:
    if node.on_failure is not None:
        return node.on_failure
    return next((t.to for t in node.transitions if t.when.strip().lower() in FAILURE_WHEN), None)


# --- the engine ------------------------------------------------------------------------------------------


@dataclass
class _Turn:
    id: int
    committed: bool
    reply_open: bool
    result_open: bool
    held_values: dict[str, object] = field(default_factory=dict)
    held_choice: str | None = None
    held: bool = False


class CallFlow:
    """The call flow of one call (see the module docstring).

    Args:
        agent: the agent; its nodes are validated here.

    Raises:
        ConfigError: the flow is inconsistent (see :func:`flow_nodes`).
    """

    def __init__(self, agent: AgentConfig) -> None:
        self.agent = agent
        self.nodes, self.start_node = flow_nodes(agent)
        self.variable_specs: dict[str, Variable] = {v.name: v for v in agent.variables}
        self.variables: dict[str, VarValue] = {}
        """Values collected so far (extraction and webhook results)."""
        self.path: list[str] = []
        """Node ids in the order they were entered."""
        self.node: Node = self.nodes[self.start_node]
        self.failure: str | None = None
        """The last webhook failure (for the call record)."""
        self._state = FlowState.NEW
        self._turn: _Turn | None = None
        self._next_turn_id = 1

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> FlowState:
        """Current state."""
        return self._state

    @property
    def finished(self) -> bool:
        """True once an ending or transfer node was entered (plan no more turns)."""
        return self._state is FlowState.FINISHED

    @property
    def simple(self) -> bool:
        """True for an agent without nodes."""
        return not self.agent.nodes

    @property
    def current_turn(self) -> int | None:
        """Id of the turn in flight, or None."""
        return None if self._turn is None else self._turn.id

    def missing(self, node: Node | None = None) -> tuple[str, ...]:
        """Mandatory variables of ``node`` (default: the current node) that have no value yet."""
        node = node or self.node
        return tuple(
            name
            for name in node.variables
            if self.variable_specs[name].mandatory and self.variables.get(name) is None
        )

    def choices(self, node: Node | None = None) -> list[Transition]:
        """Transitions of ``node`` that an LLM must judge (not ``always``; conversation nodes only)."""
        node = node or self.node
        if node.type != "conversation":
            return []
        return [t for t in node.transitions if t.when.strip().lower() not in ALWAYS_WHEN]

    def allowed(self, target: str) -> bool:
        """Whether a transition from the current node to ``target`` may be taken now (rule 4)."""
        node = self.nodes.get(target)
        if node is None or not any(t.to == target for t in self.node.transitions):
            return False
        return node.type in FIXED_SPEECH_TYPES or not self.missing()

    def speaks_fixed_text(self, target: str) -> bool:
        """True when entering ``target`` says a fixed text (script, ending, transfer), not an LLM reply."""
        node = self.nodes.get(target)
        return node is not None and (node.type in FIXED_SPEECH_TYPES or bool(node.script))

    def _fire(self, event: FlowEvent) -> None:
        target = next_state(self._state, event)
        if target is not self._state:
            logger.debug("flow %s -[%s]-> %s", self._state.name, event.name, target.name)
        self._state = target

    # ----------------------------------------------------------------- inputs

    def start(self) -> list[Action]:
        """Enter the start node. A conversation start node says nothing: the greeting is the runner's.

        Returns:
            Actions to perform (e.g. a :class:`CallWebhook` for a function start node).

        Raises:
            FlowError: called twice.
        """
        self._fire(FlowEvent.START)
        return self._enter(self.start_node, speak_prompt=False)

    def begin_turn(
        self,
        *,
        committed: bool = True,
        reply: bool = True,
        expects_result: bool = False,
        choice: str | None = None,
    ) -> int:
        """A user turn is being answered (the planner calls this; then the runner starts its calls).

        Args:
            committed: False for a speculative turn (results are held until :meth:`commit_turn`).
            reply: whether an LLM reply streams for this turn.
            expects_result: whether a flow result (side call, or the merged reply) will arrive.
            choice: a transition choice known now (cache hit), applied with the result, or at once.

        Returns:
            The turn id to pass with this turn's results. A previous turn still in flight is superseded.

        Raises:
            FlowError: no turn can start here (before :meth:`start`, or after the flow finished).
        """
        self._fire(FlowEvent.USER_TURN)
        turn = _Turn(self._next_turn_id, committed, reply, expects_result)
        self._next_turn_id += 1
        if choice is not None:
            turn.held_choice, turn.held = choice, True
        self._turn = turn
        return turn.id

    def take_actions(self, turn_id: int) -> list[Action]:
        """Actions a committed turn without a pending result can take at once (a cached choice).

        The planner calls this right after :meth:`begin_turn`; see ``TurnPlan.actions``.
        """
        turn = self._live(turn_id)
        if turn is None or not turn.committed or turn.result_open:
            return []
        return self._apply_held(turn)

    def commit_turn(self, turn_id: int) -> list[Action]:
        """The speculative turn ``turn_id`` is confirmed (the final text matched): apply held results.

        Returns:
            Actions of the results that arrived while the turn was speculative.
        """
        turn = self._live(turn_id)
        if turn is None or turn.committed:
            return []
        self._fire(FlowEvent.COMMIT)
        turn.committed = True
        actions = [] if turn.result_open else self._apply_held(turn)
        return actions + self._settle(turn)

    def abandon_turn(self, turn_id: int) -> None:
        """Drop the speculative turn ``turn_id`` (the caller went on talking); its results will be ignored.

        Raises:
            FlowError: the turn was committed (a committed turn is superseded by the next, never undone).
        """
        turn = self._live(turn_id)
        if turn is None:
            return
        if turn.committed:
            raise FlowError(f"flow: turn {turn_id} is committed and cannot be abandoned")
        self._fire(FlowEvent.ABANDON)
        self._turn = None

    def on_flow_result(
        self, turn_id: int, *, values: Mapping[str, object] | None = None, choice: str | None = None
    ) -> list[Action]:
        """The turn's extraction and/or transition result landed (None: not asked, or the call failed).

        Returns:
            Actions (empty for a speculative turn: they come from :meth:`commit_turn`).

        Raises:
            FlowError: a result arrives where no turn can be (e.g. after the flow finished).
        """
        turn = self._live(turn_id)
        if turn is None:
            logger.debug("flow < result for stale turn %d dropped", turn_id)
            return []
        self._fire(FlowEvent.FLOW_RESULT)
        turn.result_open = False
        turn.held_values.update(values or {})
        if choice is not None:
            turn.held_choice, turn.held = choice, True
        if not turn.committed:
            return []
        return self._apply_held(turn) + self._settle(turn)

    def on_extraction(self, turn_id: int, values: Mapping[str, object]) -> list[Action]:
        """An extraction-only result landed (see :meth:`on_flow_result`)."""
        return self.on_flow_result(turn_id, values=values)

    def on_transition(self, turn_id: int, choice: str) -> list[Action]:
        """A transition-only result landed: a node id or :data:`STAY` (see :meth:`on_flow_result`)."""
        return self.on_flow_result(turn_id, choice=choice)

    def on_reply_done(self, turn_id: int | None = None) -> list[Action]:
        """A reply's text is complete: the turn's LLM reply (``turn_id``) or a fixed text/entry reply (None).

        Returns:
            Actions: an ``always`` transition may fire now (rule 5).
        """
        if turn_id is not None:
            turn = self._live(turn_id)
            if turn is None:
                return []
            self._fire(FlowEvent.REPLY_DONE)
            turn.reply_open = False
            return self._settle(turn)
        self._fire(FlowEvent.REPLY_DONE)
        return self._follow_always() if self._state is FlowState.LISTENING else []

    def on_function_result(self, result: object = None, *, error: str | None = None) -> list[Action]:
        """The current function node's webhook answered (``result``: its decoded JSON) or failed.

        Args:
            result: a JSON object (merged into the variables) or any JSON value (stored under the node id).
            error: set when the webhook failed, timed out or answered with an error status.

        Raises:
            FlowError: no webhook is outstanding.
        """
        node = self.node
        if error is not None:
            self._fire(FlowEvent.WEBHOOK_FAILED)
            self.failure = f"{node.id}: {error}"
            target = _failure_target(node)
            assert target is not None  # validated by flow_nodes
            return self._enter(target, speak_prompt=True)
        self._fire(FlowEvent.WEBHOOK_OK)
        if isinstance(result, Mapping):
            for key, value in result.items():
                self._set(str(key), value)
        elif result is not None:
            self._set(node.id, result)
        edge = _success_edge(node)
        assert edge is not None  # validated by flow_nodes
        return self._enter(edge.to, speak_prompt=True)

    # -------------------------------------------------------------- internals

    def _live(self, turn_id: int) -> _Turn | None:
        return self._turn if self._turn is not None and self._turn.id == turn_id else None

    def _set(self, name: str, raw: object) -> None:
        spec = self.variable_specs.get(name)
        if spec is not None:
            value = coerce(spec, raw)
            if value is not None:
                self.variables[name] = value
        elif isinstance(raw, str | int | float | bool):
            self.variables[name] = raw  # webhook data the scripts may quote

    def _apply_held(self, turn: _Turn) -> list[Action]:
        for name, raw in turn.held_values.items():
            if name in self.node.variables:
                self._set(name, raw)
        turn.held_values.clear()
        choice, turn.held_choice, turn.held = turn.held_choice, None, False
        if choice is None or choice == STAY:
            return []
        if not self.allowed(choice):
            logger.debug("flow: %s -> %s refused (missing %s)", self.node.id, choice, self.missing())
            return []
        return self._enter(choice, speak_prompt=False, replacing=turn)

    def _settle(self, turn: _Turn) -> list[Action]:
        if self._turn is not turn or not turn.committed or turn.reply_open or turn.result_open:
            return []
        self._turn = None
        if self._state is not FlowState.TURN:
            return []
        self._fire(FlowEvent.SETTLE)
        return self._follow_always()

    def _follow_always(self) -> list[Action]:
        node = self.node
        if node.type != "conversation" or self.missing():
            return []
        edge = next((t for t in node.transitions if t.when.strip().lower() in ALWAYS_WHEN), None)
        return [] if edge is None else self._enter(edge.to, speak_prompt=False)

    def _enter(self, node_id: str, *, speak_prompt: bool, replacing: _Turn | None = None) -> list[Action]:
        node = self.nodes[node_id]
        self._fire(FlowEvent[f"ENTER_{node.type.upper()}"])
        logger.debug("flow > node %s (%s)", node.id, node.type)
        self.node = node
        self.path.append(node.id)
        fixed: Action | None = None
        if node.type == "function":
            return [self._webhook(node)]
        if node.type == "ending":
            fixed = HangUp(after_say=render(node.script or DEFAULT_GOODBYE, self.variables))
        elif node.type == "transfer":
            fixed = Transfer(to=node.transfer_to or "", after_say=render(node.script or "", self.variables))
        elif node.script:
            fixed = Say(text=render(node.script, self.variables))
        elif speak_prompt:
            missing = self.missing()
            return [Reprompt(node_id=node.id, missing=missing) if missing else Reply(node_id=node.id)]
        if fixed is None:
            return []
        actions: list[Action] = [fixed]
        if replacing is not None and replacing.reply_open:
            replacing.reply_open = False  # the replacement is not this turn's reply
            actions.insert(0, ReplaceReply(turn_id=replacing.id, node_id=node.id))
        if self._state is FlowState.FINISHED:
            self._turn = None  # rule 2: whatever was in flight is stale now
        return actions

    def _webhook(self, node: Node) -> CallWebhook:
        name = node.webhook or ""
        url = self.agent.webhooks.get(name, name)
        payload: dict[str, object] = {
            "agent": self.agent.name,
            "node": node.id,
            "variables": dict(self.variables),
        }
        return CallWebhook(node_id=node.id, url=url, payload=payload, timeout_s=node.timeout_s)
