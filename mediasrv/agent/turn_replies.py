"""From the caller's turn to the agent's reply: the shell that carries out the reply decisions.

:class:`TurnReplies` belongs to one :class:`~mediasrv.agent.runner.AgentRunner` and acts on its
turn events (the runner dispatches them). What to do (finalize, speculate, keep or drop the
speculation, answer afresh) is decided by the call's
:class:`~mediasrv.agent.conversation.ReplyPolicy` (sans-I/O, rules in its module docs); this
class gathers the policy's inputs and carries out its commands:

* a reply is planned in one of two ways: plain (system prompt, knowledge, history window) or
  through the call flow's :class:`~mediasrv.agent.planner.TurnPlanner` (its side call and
  actions go to :class:`~mediasrv.agent.actions.FlowActions`). A speculative flow turn is
  begun uncommitted and committed or abandoned with its speculation;
* each turn's timeline is stamped here (pause, end of turn, VAD end, STT final);
* nothing here plays audio: a committed reply goes to :meth:`AgentRunner.answer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from mediasrv.agent import flow as fl
from mediasrv.agent.conversation import Answer, Command, DropSpeculation, Finalize, PlaySpeculation, Speculate
from mediasrv.agent.planner import LLMRequest
from mediasrv.agent.reply import Reply
from mediasrv.errors import FlowError
from mediasrv.timing import TurnTimeline
from mediasrv.turns import EndOfTurn, UserPaused

if TYPE_CHECKING:
    from mediasrv.agent.runner import AgentRunner

log = logging.getLogger("mediasrv.agent")

FINAL_PENDING_S = 2.0
"""How long after the end of turn a ``<fin>``/``<end>`` still counts as that turn's final."""


class TurnReplies:
    """Starts, keeps fresh and commits the reply to each caller turn.

    Args:
        runner: the call's runner (owns this object; holds the speculation and the turn timeline).
    """

    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner
        self._final_pending: TurnTimeline | None = None  # committed before its final transcript

    def on_stt_final(self, at: float) -> None:
        """A Soniox ``<end>``/``<fin>``: the open turn's latest, or the one a turn committed without.

        The answer to the ``finalize`` sent at the pause often lands just after the end of turn;
        one from a pause inside the turn (before the last speech) does not count.
        """
        pending, self._final_pending = self._final_pending, None
        target = self.runner.timeline
        if pending is not None and at - (pending.get("eot") or 0.0) < FINAL_PENDING_S:
            target = pending
        if target is not None:
            target.stamp("stt_final", at, overwrite=True)

    # ----------------------------------------------------------------- planning a reply
    def _new_timeline(self, now: float) -> TurnTimeline:
        run = self.runner
        if run.timeline is None:
            run.turn_index += 1
            run.timeline = TurnTimeline(run.call_id, run.turn_index)
        return run.timeline

    def knowledge(self, text: str) -> str:
        """The knowledge-base block for ``text`` ("" without a knowledge base); its time is kept."""
        run = self.runner
        if run.kb is None or not text.strip():
            return ""
        t0 = time.perf_counter()
        block = run.kb.prompt_block(text)
        run.kb_ms_max = max(run.kb_ms_max, (time.perf_counter() - t0) * 1000.0)
        return block

    def _messages(self, user_text: str) -> list[dict[str, Any]]:
        config = self.runner.config
        window = self.runner.memory.window()
        system = config.system_prompt
        knowledge = self.knowledge(user_text)
        if knowledge:
            system = f"{system}\n\n{knowledge}"
        return [{"role": "system", "content": system}, *window, {"role": "user", "content": user_text}]

    def _plain_request(self, text: str) -> LLMRequest:
        return LLMRequest(
            purpose="reply",
            messages=self._messages(text),
            max_tokens=self.runner.config.llm.max_tokens,
            temperature=self.runner.config.llm.temperature,
        )

    def _start_turn(self, tl: TurnTimeline, text: str, *, speculative: bool) -> Reply | None:
        """Start the reply (and the side call) for ``text``; None when no LLM reply is needed."""
        run = self.runner
        run.flush_heard()
        if run.flow is None or run.planner is None:
            reply = Reply(run, tl, prompt_text=text, speculative=speculative)
            reply.start_llm(self._plain_request(text))
            return reply
        if run.flow.finished:
            return None
        try:
            plan = run.planner.plan_turn(
                run.flow, text, run.memory, committed=not speculative, knowledge=self.knowledge(text)
            )
        except FlowError as exc:
            log.warning("call %s: flow refused a turn: %s", run.call_id, exc)
            return None
        if plan.reply is None:
            if speculative:  # a cached jump to a fixed text: wait for the end of turn
                run.actions.abandon(plan)
                return None
            run.actions.perform(plan.actions, inherit=tl)
            return None
        reply = Reply(run, tl, prompt_text=text, speculative=speculative, plan=plan)
        reply.on_text_done = run.actions.turn_text_done
        reply.start_llm(plan.reply, say_field=plan.say_field)
        if plan.side is not None:
            run.actions.start_side(plan, tl)
        if not speculative and plan.actions:
            run.actions.perform(plan.actions)
        return reply

    # ----------------------------------------------------------------- speculation
    def on_paused(self, ev: UserPaused, now: float) -> None:
        """A tentative end of turn: finalize the STT, speculate on the partial text."""
        run = self.runner
        tl = self._new_timeline(now)
        tl.stamp("user_paused", now, overwrite=True)  # the pause that led to the end
        self._carry_out(
            run.policy.paused(
                text=ev.text,
                finalize=ev.finalize,
                audio_ms=run.audio_ms,
                speculating_on=self._speculating_on(),
                may_speak=self._may_speak(),
                text_is_current=run.turns.text_is_current,
            ),
            now,
        )

    def _speculating_on(self) -> str | None:
        spec = self.runner.speculation
        return None if spec is None else spec.prompt_text

    def _may_speak(self) -> bool:
        run = self.runner
        return not run.supervisor.hold_replies and not run.failures.failed

    def refresh_speculation(self) -> None:
        """Keep the speculative reply on the freshest words (early kick-off on partials)."""
        run = self.runner
        turns = run.turns
        self._carry_out(
            run.policy.words(
                state=turns.state,
                text=turns.turn_text,
                speculating_on=self._speculating_on(),
                may_speak=self._may_speak(),
                text_is_current=turns.text_is_current,
                speculation_due=turns.speculation_due,
                turn_open=run.timeline is not None,
            ),
            None,
        )

    def _carry_out(self, commands: list[Command], now: float | None, tl: TurnTimeline | None = None) -> None:
        """Do what the policy decided (the shell's half of :mod:`mediasrv.agent.conversation`)."""
        run = self.runner
        for cmd in commands:
            if isinstance(cmd, Finalize):
                run.stt.finalize()
            elif isinstance(cmd, DropSpeculation):
                spec, run.speculation = run.speculation, None
                if spec is not None and cmd.miss:
                    run.counters.speculative_misses += 1
                    if tl is not None:
                        tl.speculative = "miss"
                    run.actions.abandon(spec.plan)
                    run.spawn(spec.cancel())
                else:
                    self._drop_speculation_of(spec)
            elif isinstance(cmd, Speculate):
                timeline = self._new_timeline(asyncio.get_running_loop().time() if now is None else now)
                run.speculation = self._start_turn(timeline, cmd.text, speculative=True)
            elif isinstance(cmd, PlaySpeculation):
                spec, run.speculation = run.speculation, None
                if spec is not None and tl is not None:
                    self._play_hit(spec, tl.text, tl)
            elif isinstance(cmd, Answer) and tl is not None:
                reply = self._start_turn(tl, cmd.text, speculative=False)  # memory before this turn
                self._record_caller(cmd.text)
                if reply is not None:
                    run.answer(reply, cmd.text)

    def drop_speculation(self) -> None:
        """Cancel the speculative reply, if any (counted)."""
        spec, self.runner.speculation = self.runner.speculation, None
        self._drop_speculation_of(spec)

    def _drop_speculation_of(self, spec: Reply | None) -> None:
        if spec is not None:
            self.runner.counters.speculative_cancelled += 1
            self.runner.actions.abandon(spec.plan)
            self.runner.spawn(spec.cancel())

    # ----------------------------------------------------------------- end of turn
    def on_end_of_turn(self, ev: EndOfTurn, now: float) -> None:
        """The caller's turn is over: play the speculation if it guessed right, else start afresh."""
        run = self.runner
        tl = self._new_timeline(now)
        tl.stamp("eot", now)
        vad_end = now - ev.silence_ms / 1000.0
        tl.stamp("vad_end", vad_end, overwrite=True)
        final = tl.get("stt_final")
        if final is None or final < vad_end:  # a finalize from a pause inside the turn
            tl.stamps.pop("stt_final", None)
            self._final_pending = tl
        text = ev.text
        tl.text = text
        run.timeline = None
        spec = run.speculation
        if not text.strip() and spec is None:
            return  # a wordless turn (noise the VAD took for speech): nothing to answer
        run.counters.turns += 1
        run.supervisor.on_turn_committed(run.audio_ms)
        hold = run.supervisor.hold_replies  # a machine answered: say nothing until the message
        self._carry_out(
            run.policy.end_of_turn(
                text=text, speculating_on=self._speculating_on(), hold=hold, failed=bool(run.failures.failed)
            ),
            now,
            tl,
        )
        if hold:
            run.supervise()

    def _play_hit(self, spec: Reply, text: str, tl: TurnTimeline) -> None:
        """The speculation guessed the turn: commit its flow turn and play it."""
        run = self.runner
        run.counters.speculative_hits += 1
        tl.speculative = "hit"
        actions: list[fl.Action] = []
        flow, plan = run.flow, spec.plan
        if flow is not None and plan is not None:
            actions = run.actions.flow_try(lambda: flow.commit_turn(plan.turn_id))
        self._record_caller(text)
        run.answer(spec, text)
        run.actions.perform(actions)

    def _record_caller(self, text: str) -> None:
        run = self.runner
        run.last_user = text
        run.memory.add_user(text)
        run.recorder.line("caller", text)
