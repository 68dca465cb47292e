"""From the caller's turn to the agent's reply: speculate at a pause, commit at the end of turn.

:class:`TurnReplies` belongs to one :class:`~mediasrv.agent.runner.AgentRunner` and acts on its
turn events (the runner dispatches them). Rules:

* ``user_paused`` asks the STT to finalize (at most every ``FINALIZE_MIN_GAP_MS`` of audio) and
  starts a speculative reply from the partial text, if that text already holds the last speech
  (else it starts when the STT catches up: a reply to stale words would surely be dropped);
  fresher words restart it (once the silence reaches the pause point of the new words: a
  reply to "I'm calling about the bill I" waits longer than one to "... last week."), and while
  the caller still seems to talk a transcript that reads as a finished sentence starts one too.
* ``end_of_turn`` commits: a speculation started on the same text (after normalising) is a hit
  and plays; otherwise it is a miss, cancelled, and a reply starts from the final text.
* A reply is planned in one of two ways: plain (system prompt, knowledge, history window) or
  through the call flow's :class:`~mediasrv.agent.planner.TurnPlanner` (its side call and
  actions go to :class:`~mediasrv.agent.actions.FlowActions`). A speculative flow turn is
  begun uncommitted and committed or abandoned with its speculation.
* Nothing here plays audio: a committed reply goes to :meth:`AgentRunner.answer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from mediasrv.agent import flow as fl
from mediasrv.agent.clauses import normalise
from mediasrv.agent.planner import LLMRequest
from mediasrv.agent.reply import Reply
from mediasrv.errors import FlowError
from mediasrv.providers.soniox.messages import FINALIZE_MIN_GAP_MS
from mediasrv.timing import TurnTimeline
from mediasrv.turns import Completeness, EndOfTurn, TurnState, UserPaused, assess_completeness

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
        self._last_finalize_ms = -FINALIZE_MIN_GAP_MS
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
        # Soniox: "do not send [finalize] more than every few seconds". The detector asks for it
        # once per pause, after the first 120 ms of silence (UserPaused.finalize).
        if ev.finalize and run.audio_ms - self._last_finalize_ms >= FINALIZE_MIN_GAP_MS:
            self._last_finalize_ms = run.audio_ms
            run.stt.finalize()
        text = getattr(ev, "text", "") or ""
        spec = run.speculation
        if spec is not None and normalise(spec.prompt_text) == normalise(text):
            return  # already speculating on these words (a finished sentence started it)
        self.drop_speculation()
        if self._may_speculate(text) and run.turns.text_is_current:
            run.speculation = self._start_turn(tl, text, speculative=True)
        # Stale text (the STT has not caught up with the last speech): a reply to it would
        # surely be dropped. The speculation starts when the words land (refresh_speculation).

    def _may_speculate(self, text: str) -> bool:
        run = self.runner
        return (
            run.config.speculative
            and bool(text.strip())
            and not run.supervisor.hold_replies
            and not run.failures.failed
        )

    def refresh_speculation(self) -> None:
        """Keep the speculative reply on the freshest words (early kick-off on partials).

        During a pause, new words restart the speculation on the fresher text. While the VAD
        still hears the caller (line noise can hold it on after the last word), a transcript
        that already reads as a finished sentence starts one too; words that make it
        unfinished again drop it. Nothing speculative plays before the end of turn.
        """
        run = self.runner
        state = run.turns.state
        spec = run.speculation
        text = run.turns.turn_text
        if state is TurnState.USER_PAUSED:
            if spec is not None and normalise(text) == normalise(spec.prompt_text):
                return
            self.drop_speculation()  # its words are out of date whatever comes next
            turns = run.turns
            if run.timeline is None or not self._may_speculate(text):
                return
            if turns.text_is_current and turns.speculation_due:
                run.speculation = self._start_turn(run.timeline, text, speculative=True)
            # else: less finished words ("... the bill I") wait for their own, later pause point,
            # where the detector sends UserPaused again.
            return
        if state not in (TurnState.USER_SPEAKING, TurnState.USER_PAUSING):
            return
        if spec is not None and normalise(text) == normalise(spec.prompt_text):
            return
        finished = bool(text.strip()) and assess_completeness(text).verdict is Completeness.COMPLETE
        if spec is not None:
            self.drop_speculation()
        if finished and self._may_speculate(text):
            tl = self._new_timeline(asyncio.get_running_loop().time())
            run.speculation = self._start_turn(tl, text, speculative=True)

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
        run.speculation = None
        run.supervisor.on_turn_committed(run.audio_ms)
        if run.supervisor.hold_replies:  # a machine answered: say nothing until the message
            self._drop_speculation_of(spec)
            run.supervise()
            return
        if run.failures.failed:  # a provider refused the call: its fallback line is the last word
            self._drop_speculation_of(spec)
            return
        if spec is not None and normalise(spec.prompt_text) == normalise(text):
            self._play_hit(spec, text, tl)
            return
        if spec is not None:
            run.counters.speculative_misses += 1
            tl.speculative = "miss"
            run.actions.abandon(spec.plan)
            run.spawn(spec.cancel())
        if not text.strip():
            return
        reply = self._start_turn(tl, text, speculative=False)  # plans with the memory before this turn
        self._record_caller(text)
        if reply is not None:
            run.answer(reply, text)

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
