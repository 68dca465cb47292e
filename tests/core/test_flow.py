"""CallFlow and TurnPlanner without sockets or an event loop: every node type, reprompt, transitions,
webhook failure, endings, transfer, the transition cache, extraction skipping and the one-extra-call rule."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mediasrv.agent.config import AgentConfig, Variable, load_agent
from mediasrv.agent.flow import (
    TRANSITIONS,
    Action,
    CallFlow,
    CallWebhook,
    FlowEvent,
    FlowState,
    HangUp,
    ReplaceReply,
    Reply,
    Reprompt,
    Say,
    Transfer,
    next_state,
)
from mediasrv.agent.planner import TransitionCache, TurnPlan, TurnPlanner, can_hold, is_acknowledgement
from mediasrv.agent.prompts import ConversationMemory, render
from mediasrv.errors import ConfigError, FlowError

AGENTS = Path(__file__).resolve().parents[2] / "agents"
BOOKING_RAW = json.loads((AGENTS / "booking_flow.json").read_text())


def booking(**changes: object) -> AgentConfig:
    raw = copy.deepcopy(BOOKING_RAW)
    raw.update(changes)
    return msgspec.convert(raw, type=AgentConfig)


def side_json(vars: Mapping[str, object] | None = None, next: str | None = None) -> str:
    body: dict[str, object] = {}
    if vars is not None:
        body["vars"] = dict(vars)
    if next is not None:
        body["next"] = next
    return json.dumps(body)


class Call:
    """One call's flow + memory, driven like the runner drives them (committed turns)."""

    def __init__(self, agent: AgentConfig, planner: TurnPlanner | None = None) -> None:
        self.flow = CallFlow(agent)
        self.planner = planner or TurnPlanner(agent)
        self.memory = ConversationMemory(agent.history_turns)
        assert self.flow.start() == []

    def turn(self, text: str, *, committed: bool = True) -> TurnPlan:
        return self.planner.plan_turn(self.flow, text, self.memory, committed=committed)

    def goto_collect(self) -> None:
        plan = self.turn("I want to book a cleaning")
        assert self.planner.finish_side(self.flow, plan, side_json(next="collect")) == []
        assert self.planner.finish_reply(self.flow, plan, "Sure, happy to help.") == []
        assert self.flow.node.id == "collect"


# --- simple mode ------------------------------------------------------------------------------------------


def test_simple_mode_extracts_in_one_side_call_and_never_transitions() -> None:
    agent = load_agent(AGENTS / "support_typical.json")
    call = Call(agent)
    assert call.flow.simple and call.flow.node.id == "main"
    plan = call.turn("Hi, my name is Dana Lee and my account number is AC-7731")
    assert plan.reply is not None and plan.reply.purpose == "reply"
    assert plan.side is not None and plan.side.purpose == "extraction"
    assert plan.extract == (
        "caller_name",
        "account_number",
        "callback_number",
    )  # digits: a phone may be in it
    assert call.turn("Hi, my name is Dana Lee").extract == ("caller_name", "account_number")  # no digits
    assert plan.side.response_format is not None
    assert plan.side.response_format["json_schema"]["name"] == "extraction"  # type: ignore[index]
    vars = {"caller_name": "Dana Lee", "account_number": "AC-7731"}
    plan = call.turn("Hi, my name is Dana Lee and my account number is AC-7731")
    assert call.planner.finish_side(call.flow, plan, side_json({**vars, "callback_number": None})) == []
    assert call.flow.variables == vars
    assert call.planner.finish_reply(call.flow, plan, "Thanks Dana.") == []
    assert call.flow.state is FlowState.LISTENING
    assert call.flow.path == ["main"]


@pytest.mark.parametrize("text", ["yes", "Okay.", "okay thanks", "uh huh", "Yeah, sure!"])
def test_extraction_is_skipped_for_acknowledgements(text: str) -> None:
    call = Call(load_agent(AGENTS / "support_typical.json"))
    plan = call.turn(text)
    assert plan.side is None and plan.extract == ()
    assert plan.reply is not None


# --- conversation nodes, transitions, reprompt ------------------------------------------------------------


def test_transition_moves_to_prompt_node_without_replacing_the_reply() -> None:
    call = Call(booking())
    plan = call.turn("I want to book a cleaning")
    assert plan.extract == () and plan.choose
    assert plan.side is not None and plan.side.purpose == "transition"
    schema = plan.side.response_format["json_schema"]["schema"]  # type: ignore[index]
    assert schema["properties"]["next"]["enum"] == ["stay", "collect", "human", "goodbye"]
    assert call.planner.finish_side(call.flow, plan, side_json(next="collect")) == []
    assert call.flow.node.id == "collect" and call.flow.path == ["greet", "collect"]
    assert call.flow.state is FlowState.TURN  # the reply is still streaming
    assert call.planner.finish_reply(call.flow, plan, "Sure.") == []
    assert call.flow.state.name == "LISTENING"


def test_missing_mandatory_variables_make_the_reply_a_reprompt_and_gate_the_transition() -> None:
    call = Call(booking())
    call.goto_collect()
    plan = call.turn("This is Alice Smith")
    assert plan.missing == ("caller_name", "appointment_date")
    assert plan.extra_calls == 1 and plan.side is not None and plan.side.purpose == "extraction"
    assert plan.extract == ("caller_name",)  # no digits or date words: the date and phone are not asked
    system = str(plan.reply.messages[0]["content"])  # type: ignore[union-attr]
    assert "Still required: caller_name" in system and "appointment_date" in system
    # the model wants to move on, but the date is missing: the flow stays
    actions = call.planner.finish_side(call.flow, plan, side_json({"caller_name": "Alice Smith"}, "check"))
    assert actions == [] and call.flow.node.id == "collect"
    call.planner.finish_reply(call.flow, plan, "Thanks Alice, which day suits you?")
    plan = call.turn("Tomorrow please")
    assert plan.missing == ("appointment_date",)
    assert "Still required: appointment_date" in str(plan.reply.messages[0]["content"])  # type: ignore[union-attr]


def test_reprompt_action_after_a_webhook_lands_in_a_prompt_node_with_missing_values() -> None:
    raw = copy.deepcopy(BOOKING_RAW)
    raw["start_node"] = "lookup"
    raw["nodes"].append(
        {
            "id": "lookup",
            "type": "function",
            "webhook": "availability",
            "transitions": [{"to": "collect", "when": "always"}],
            "on_failure": "human",
        }
    )
    agent = msgspec.convert(raw, type=AgentConfig)
    flow = CallFlow(agent)
    [hook] = flow.start()
    assert isinstance(hook, CallWebhook) and hook.node_id == "lookup"
    assert flow.on_function_result({"caller_name": "Bo Chen"}) == [
        Reprompt(node_id="collect", missing=("appointment_date",))
    ]
    planner = TurnPlanner(agent)
    request = planner.request_for(
        flow, Reprompt(node_id="collect", missing=("appointment_date",)), ConversationMemory()
    )
    assert request.purpose == "reply" and "Known details: caller_name=Bo Chen" in str(
        request.messages[0]["content"]
    )
    flow.variables["appointment_date"] = "Friday"
    flow2 = CallFlow(agent)
    flow2.start()
    assert flow2.on_function_result({"caller_name": "Bo", "appointment_date": "Friday"}) == [
        Reply(node_id="collect")
    ]


# --- function nodes ---------------------------------------------------------------------------------------


def complete_collect(call: Call) -> list[Action]:
    call.goto_collect()
    plan = call.turn("I'm Alice Smith, tomorrow at 9 works, my number is 555 010 7788")
    assert set(plan.extract) == {"caller_name", "appointment_date", "phone_number"}
    vars = {"caller_name": "Alice Smith", "appointment_date": "tomorrow", "phone_number": "5550107788"}
    actions = call.planner.finish_side(call.flow, plan, side_json(vars, "check"))
    assert call.planner.finish_reply(call.flow, plan, "Let me check the calendar.") == []
    return actions


def test_function_node_calls_the_webhook_while_the_reply_plays_as_filler() -> None:
    call = Call(booking())
    [hook] = complete_collect(call)
    assert hook == CallWebhook(
        node_id="check",
        url="http://127.0.0.1:8089/availability",
        payload={
            "agent": "booking_flow",
            "node": "check",
            "variables": {
                "caller_name": "Alice Smith",
                "appointment_date": "tomorrow",
                "phone_number": "5550107788",
            },
        },
        timeout_s=2.5,
    )
    assert call.flow.state is FlowState.WEBHOOK
    actions = call.flow.on_function_result({"slot": "10 am"})
    assert actions == [
        Say(text="Great news, Alice Smith: you're booked for tomorrow at 10 am. Is there anything else?")
    ]
    assert call.flow.variables["slot"] == "10 am"
    assert call.flow.node.id == "confirm" and call.flow.state.name == "LISTENING"
    assert call.flow.on_reply_done() == []  # confirm has no 'always' edge: wait for the caller


@pytest.mark.parametrize("error", ["timeout after 2.5 s", "HTTP 503"])
def test_webhook_failure_takes_the_failure_path_then_the_always_edge_to_transfer(error: str) -> None:
    call = Call(booking())
    complete_collect(call)
    assert call.flow.on_function_result(error=error) == [
        Say(text="Sorry, I can't reach our calendar right now. Let me put you through to the front desk.")
    ]
    assert call.flow.failure == f"check: {error}"
    assert call.flow.on_reply_done() == [
        Transfer(to="+15550100200", after_say="Connecting you to the front desk now.")
    ]
    assert call.flow.finished
    assert call.flow.path == ["greet", "collect", "check", "sorry", "human"]


def test_failure_transition_works_without_on_failure() -> None:
    raw = copy.deepcopy(BOOKING_RAW)
    check = next(n for n in raw["nodes"] if n["id"] == "check")
    del check["on_failure"]
    check["transitions"].append({"to": "human", "when": "failure"})
    call = Call(msgspec.convert(raw, type=AgentConfig))
    complete_collect(call)
    [transfer] = call.flow.on_function_result(error="connection refused")
    assert isinstance(transfer, Transfer)


def test_user_turn_during_the_webhook_gets_a_reply_without_side_call() -> None:
    call = Call(booking())
    complete_collect(call)
    plan = call.turn("are you still there?")
    assert plan.side is None and plan.reply is not None and plan.node_id == "check"
    assert "still checking the calendar" in str(plan.reply.messages[0]["content"])
    [say] = call.flow.on_function_result({"slot": "noon"})
    assert isinstance(say, Say)
    assert call.planner.finish_reply(call.flow, plan, "Yes, one moment.") == []


# --- ending and transfer ----------------------------------------------------------------------------------


def test_ending_replaces_the_streaming_reply_and_hangs_up() -> None:
    call = Call(booking())
    call.goto_collect()
    call.flow.variables.update(caller_name="Alice")
    plan = call.turn("Actually never mind, goodbye")
    actions = call.planner.finish_side(call.flow, plan, side_json({"caller_name": None}, "goodbye"))
    assert actions == [
        ReplaceReply(turn_id=plan.turn_id, node_id="goodbye"),
        HangUp(after_say="Thanks for calling Bright Smile, Alice. Goodbye!"),
    ]
    assert call.flow.finished
    assert call.planner.finish_reply(call.flow, plan, "Okay") == []  # the cancelled reply: stale, dropped
    with pytest.raises(FlowError):
        call.turn("hello?")


def test_ending_after_the_reply_finished_needs_no_replacement() -> None:
    call = Call(booking())
    plan = call.turn("That's all, bye")
    assert call.planner.finish_reply(call.flow, plan, "Goodbye!") == []
    assert call.planner.finish_side(call.flow, plan, side_json(next="goodbye")) == [
        HangUp(after_say="Thanks for calling Bright Smile. Goodbye!")
    ]


def test_transfer_is_reachable_even_while_mandatory_values_are_missing() -> None:
    call = Call(booking())
    call.goto_collect()
    plan = call.turn("Can I talk to a real person")
    assert call.flow.missing() == ("caller_name", "appointment_date")
    actions = call.planner.finish_side(call.flow, plan, side_json({"caller_name": None}, "human"))
    assert actions == [
        ReplaceReply(turn_id=plan.turn_id, node_id="human"),
        Transfer(to="+15550100200", after_say="Connecting you to the front desk now."),
    ]


# --- cache, speculation, stale results --------------------------------------------------------------------


def test_transition_cache_hit_skips_the_side_call_and_the_reply() -> None:
    agent = booking()
    planner = TurnPlanner(agent, cache=TransitionCache())
    first = Call(agent, planner)
    plan = first.turn("Can I speak to a human, please?")
    first.planner.finish_side(first.flow, plan, side_json(next="human"))
    second = Call(agent, planner)  # another call of the same agent
    plan = second.turn("can i speak to a HUMAN please")
    assert plan.cached_choice == "human" and plan.calls == [] and plan.reply is None
    assert plan.actions == [Transfer(to="+15550100200", after_say="Connecting you to the front desk now.")]
    assert planner.cache.hits == 1


def test_cache_hit_to_a_prompt_node_moves_first_and_writes_the_reply_for_the_new_node() -> None:
    agent = booking()
    planner = TurnPlanner(agent)
    first = Call(agent, planner)
    first.goto_collect()
    second = Call(agent, planner)
    plan = second.turn("I want to book a cleaning!")
    assert plan.side is None and plan.cached_choice == "collect" and plan.actions == []
    assert second.flow.node.id == "collect" and plan.node_id == "collect"
    assert "Collect the caller's name" in str(plan.reply.messages[0]["content"])  # type: ignore[union-attr]
    assert plan.missing == ("caller_name", "appointment_date")


def test_speculative_turn_results_wait_for_commit_and_vanish_on_abandon() -> None:
    call = Call(booking())
    plan = call.turn("I want to book", committed=False)
    assert call.planner.finish_side(call.flow, plan, side_json(next="collect")) == []
    assert call.flow.node.id == "greet"  # held
    call.flow.abandon_turn(plan.turn_id)
    assert call.flow.state is FlowState.LISTENING and call.flow.node.id == "greet"
    plan = call.turn("I want to book a visit", committed=False)
    call.planner.finish_side(call.flow, plan, side_json(next="collect"))
    assert call.flow.commit_turn(plan.turn_id) == []
    assert call.flow.node.id == "collect"
    with pytest.raises(FlowError):
        call.flow.abandon_turn(plan.turn_id)


def test_result_of_a_superseded_turn_is_dropped() -> None:
    call = Call(booking())
    call.goto_collect()
    old = call.turn("I'm Alice Smith")
    new = call.turn("sorry, I'm Alicia Smith")  # barge-in: a new turn supersedes the old one
    assert call.planner.finish_side(call.flow, old, side_json({"caller_name": "Alice Smith"})) == []
    assert "caller_name" not in call.flow.variables
    call.planner.finish_side(call.flow, new, side_json({"caller_name": "Alicia Smith"}))
    assert call.flow.variables["caller_name"] == "Alicia Smith"


# --- merged strategy --------------------------------------------------------------------------------------


def test_merged_plan_is_one_call_with_say_first_and_feeds_the_flow_at_the_end() -> None:
    agent = booking(flow_strategy="merged")
    call = Call(agent)
    call.goto_collect()
    plan = call.turn("I'm Alice Smith and Friday works")
    assert plan.side is None and plan.say_field == "say" and plan.reply is not None
    assert plan.reply.purpose == "flow"
    fmt = plan.reply.response_format
    assert fmt is not None and fmt["json_schema"]["name"] == "flow"  # type: ignore[index]
    assert list(fmt["json_schema"]["schema"]["properties"]) == ["say", "vars", "next"]  # type: ignore[index]
    text = side_json({"caller_name": "Alice Smith", "appointment_date": "Friday"}, "check")
    text = '{"say": "Let me check Friday.", ' + text[1:]
    assert call.planner.spoken_text(plan, text) == "Let me check Friday."
    [hook] = call.planner.finish_reply(call.flow, plan, text)
    assert isinstance(hook, CallWebhook) and call.flow.state is FlowState.WEBHOOK


def test_merged_strategy_falls_back_to_plain_reply_when_nothing_is_asked() -> None:
    call = Call(load_agent(AGENTS / "support_typical.json"), TurnPlanner(booking(), strategy="merged"))
    plan = call.turn("okay")
    assert plan.say_field is None and plan.reply is not None and plan.reply.response_format is None


def test_a_turn_plan_never_holds_more_than_one_call_besides_the_reply() -> None:
    utterances = ["yes", "I'm Alice Smith, Friday, 555 123 4567", "goodbye", "talk to a person", "book me in"]
    choices = [None, "stay", "collect", "check", "human", "goodbye"]
    for strategy, text, choice in itertools.product(("parallel", "merged"), utterances, choices):
        planner = TurnPlanner(booking(), strategy=strategy)  # type: ignore[arg-type]
        call = Call(booking(), planner)
        for _ in range(3):
            if call.flow.finished or call.flow.state is FlowState.WEBHOOK:
                break
            plan = call.turn(text)
            assert plan.extra_calls <= 1 and len(plan.calls) <= 2
            assert [r.purpose for r in plan.calls].count("reply") + [r.purpose for r in plan.calls].count(
                "flow"
            ) <= 1
            if strategy == "merged":
                assert plan.side is None
            if plan.side is not None:
                call.planner.finish_side(call.flow, plan, side_json({}, choice))
            if not call.flow.finished:
                call.planner.finish_reply(call.flow, plan, side_json({}, choice) if plan.say_field else "ok")


# --- the table --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "event"), list(itertools.product(FlowState, FlowEvent)))
def test_every_pair_outside_the_table_raises_flow_error(state: FlowState, event: FlowEvent) -> None:
    if event in TRANSITIONS[state]:
        assert next_state(state, event) is TRANSITIONS[state][event]
    else:
        with pytest.raises(FlowError, match=f"{state.name} on {event.name}"):
            next_state(state, event)


def test_public_inputs_in_impossible_states_raise() -> None:
    flow = CallFlow(booking())
    with pytest.raises(FlowError):
        flow.begin_turn()  # before start
    flow.start()
    with pytest.raises(FlowError):
        flow.on_function_result({"x": 1})  # no webhook outstanding
    with pytest.raises(FlowError):
        flow.start()  # twice


def test_every_state_is_reachable_and_the_diagram_comes_from_the_table() -> None:
    assert set(TRANSITIONS) == set(FlowState)
    seen, frontier = {FlowState.NEW}, [FlowState.NEW]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()].values():
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(FlowState)
    lines = ["stateDiagram-v2"] + [
        f"    {s.name} --> {t.name}: {e.name}" for s, row in TRANSITIONS.items() for e, t in row.items()
    ]
    assert len(lines) - 1 == sum(len(row) for row in TRANSITIONS.values())
    assert "    WEBHOOK --> FINISHED: ENTER_TRANSFER" in lines


# --- config validation, rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda n: n[0]["transitions"][0].update(to="nowhere"), "nodes[0].transitions[0].to"),
        (lambda n: n[2].pop("on_failure"), "nodes[2].on_failure"),
        (lambda n: n[2].pop("webhook"), "nodes[2].webhook"),
        (lambda n: n[5].pop("transfer_to"), "nodes[5].transfer_to"),
        (lambda n: n[1]["variables"].append("shoe_size"), "nodes[1].variables"),
    ],
)
def test_flow_errors_in_the_config_name_the_field(mutate: Callable[[Any], object], field: str) -> None:
    raw = copy.deepcopy(BOOKING_RAW)
    mutate(raw["nodes"])
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        CallFlow(msgspec.convert(raw, type=AgentConfig))


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("yes", "string", False),
        ("okay thanks", "date", False),
        ("yes", "boolean", True),
        ("next Tuesday", "date", True),
        ("the 3rd", "date", True),
        ("I'd like to come in", "date", False),
        ("five five five one two one two", "phone", True),
        ("call me back", "phone", False),
        ("about 20", "number", True),
        ("a dozen", "number", True),
        ("none", "number", False),
        ("it's bob at example dot com", "email", True),
        ("bob@example.com", "email", True),
        ("my name is Bob", "string", True),
    ],
)
def test_can_hold(text: str, kind: str, expected: bool) -> None:
    assert can_hold(text, Variable(name="v", type=kind)) is expected  # type: ignore[arg-type]


def test_acknowledgement_is_short() -> None:
    assert is_acknowledgement("Okay, thank you!")
    assert not is_acknowledgement("okay so my account is AC1")


def test_render_fills_known_values_only() -> None:
    assert render("Bye {name}, see you {day}!", {"name": "Al"}) == "Bye Al, see you!"
    assert render("Thanks, {name}. Bye", {}) == "Thanks. Bye"


def test_memory_keeps_a_window_and_summarises_older_turns() -> None:
    memory = ConversationMemory(window_turns=2)
    for i in range(5):
        memory.add_user(f"question {i} " + "word " * 20)
        memory.add_agent(f"answer {i}")
    window = memory.window()
    assert [m["content"] for m in window][::2] == [f"question {i} " + ("word " * 20).strip() for i in (3, 4)]
    assert len(window) == 4
    summary = memory.summary()
    assert summary.startswith("3 earlier exchanges.")
    assert '"question 0 word' in summary and "..." in summary and "question 3" not in summary


def test_prompt_size_stays_bounded_over_a_long_call() -> None:
    agent = load_agent(AGENTS / "support_typical.json")
    call = Call(agent)
    sizes = []
    for i in range(40):
        plan = call.turn(f"My question number {i} is about the bill and the router and the outage")
        call.planner.finish_side(call.flow, plan, side_json({}))
        call.planner.finish_reply(call.flow, plan, "Let me check that for you right away.")
        call.memory.add_user(plan.utterance)
        call.memory.add_agent("Let me check that for you right away.")
        sizes.append(len(json.dumps(plan.reply.messages)))  # type: ignore[union-attr]
    assert max(sizes[20:]) - min(sizes[20:]) < 40  # flat once the window is full
    assert max(sizes) < 4000


def test_speculative_cache_hit_to_an_ending_speaks_only_at_commit() -> None:
    agent = booking()
    planner = TurnPlanner(agent)
    first = Call(agent, planner)
    plan = first.turn("that's all, goodbye")
    planner.finish_side(first.flow, plan, side_json(next="goodbye"))
    second = Call(agent, planner)
    plan = second.turn("That's all. Goodbye!", committed=False)
    assert plan.calls == [] and plan.actions == [] and not second.flow.finished
    assert second.flow.commit_turn(plan.turn_id) == [
        HangUp(after_say="Thanks for calling Bright Smile. Goodbye!")
    ]
    assert second.flow.finished


def test_a_failed_side_call_or_unparsable_json_leaves_the_flow_where_it_was() -> None:
    call = Call(booking(flow_strategy="merged"))
    call.goto_collect()
    plan = call.turn("I'm Alice Smith and Friday works")
    assert call.planner.finish_reply(call.flow, plan, '{"say": "Thanks Alice", "vars": {"caller_na') == []
    assert call.flow.state.name == "LISTENING" and call.flow.node.id == "collect"
    assert call.flow.variables == {}
    plan = call.turn("I'm Alice Smith and Friday works")
    assert call.planner.finish_reply(call.flow, plan, None) == []
    assert call.flow.current_turn is None
