"""The call-flow side of a call: side calls, and carrying out what the flow and the supervisor ask.

:class:`FlowActions` belongs to one :class:`~mediasrv.agent.runner.AgentRunner` and works on its
state (what is playing, the queue of fixed texts, the counters, the outcome). Rules:

* A turn's side call (extraction or transition, at most one) runs as a task next to the reply,
  never in front of it; its result goes back to the planner and may yield actions.
* :meth:`FlowActions.perform` carries out flow actions in order and never awaits: webhooks,
  hang-ups and transfers run as tasks. Fixed texts (say, goodbye, check-in, voicemail message)
  queue behind the utterance that is playing; they never overlap it.
* ``ReplaceReply`` stops the turn's reply (the node just entered needs a different one); the
  fixed text or flow reply that follows takes over the turn's timeline, so the turn is still
  reported once, with its first frame.
* A hang-up or transfer waits until the caller heard the goodbye: the mark after its audio,
  or a grace period after it should have played.
* A flow error is logged and the action dropped; the call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from mediasrv.agent import flow as fl
from mediasrv.agent.planner import LLMRequest, TurnPlan
from mediasrv.agent.ports import LlmDelta
from mediasrv.agent.reply import Reply
from mediasrv.errors import FlowError
from mediasrv.timing import TurnTimeline

if TYPE_CHECKING:
    from mediasrv.agent.runner import AgentRunner

log = logging.getLogger("mediasrv.agent")


class FlowActions:
    """Side calls and flow/supervisor actions for one call.

    Args:
        runner: the call's runner (owns this object; its state is what the actions change).
    """

    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner
        self.sides: dict[int, asyncio.Task[None]] = {}
        """Side calls in flight, by turn id."""
        self._inherit: TurnTimeline | None = None
        self._http: aiohttp.ClientSession | None = None

    # ----------------------------------------------------------------- flow calls
    def flow_try(self, fn: Callable[[], list[fl.Action]]) -> list[fl.Action]:
        """``fn()``'s actions, or none when the flow refuses (logged)."""
        try:
            return fn()
        except FlowError as exc:
            log.warning("call %s: flow: %s", self.runner.call_id, exc)
            return []

    def flow_call(self, fn: Callable[[], list[fl.Action]]) -> None:
        """Call the flow and carry out the actions it returns."""
        self.perform(self.flow_try(fn))

    def turn_text_done(self, reply: Reply, text: str | None) -> None:
        """A turn's reply streamed to its end (or failed): tell the flow."""
        run = self.runner
        if reply.stopped or reply.plan is None or run.flow is None or run.planner is None:
            return
        plan, flow, planner = reply.plan, run.flow, run.planner
        self.perform(self.flow_try(lambda: planner.finish_reply(flow, plan, text)))

    # ----------------------------------------------------------------- side calls
    def start_side(self, plan: TurnPlan, tl: TurnTimeline) -> None:
        """Run the plan's side call as a task (its result may yield actions)."""
        assert plan.side is not None
        self.runner.counters.side_calls += 1
        name = f"side-{self.runner.call_id}-{plan.turn_id}"
        task = asyncio.create_task(self._run_side(plan, plan.side, tl), name=name)
        self.sides[plan.turn_id] = task

    async def _run_side(self, plan: TurnPlan, request: LLMRequest, tl: TurnTimeline) -> None:
        run = self.runner
        tl.side_requests += 1
        parts: list[str] = []
        text: str | None = None
        try:
            async for ev in run.stream(request):
                if isinstance(ev, LlmDelta):
                    parts.append(ev.text)
            text = "".join(parts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            run.counters.side_failures += 1
            log.warning("call %s: %s call failed: %s", run.call_id, request.purpose, exc)
        finally:
            self.sides.pop(plan.turn_id, None)
        tl.stamp("extraction_done", asyncio.get_running_loop().time())
        if run.flow is None or run.planner is None or run.closed:
            return
        flow, planner = run.flow, run.planner
        self.perform(self.flow_try(lambda: planner.finish_side(flow, plan, text)))

    def abandon(self, plan: TurnPlan | None) -> None:
        """Drop an uncommitted flow turn (its speculation was dropped) and its side call."""
        flow = self.runner.flow
        if plan is None or flow is None:
            return
        side = self.sides.pop(plan.turn_id, None)
        if side is not None:
            side.cancel()
        with contextlib.suppress(FlowError):
            flow.abandon_turn(plan.turn_id)

    def cancel_sides(self) -> list[asyncio.Task[None]]:
        """Cancel every side call in flight; the tasks, for the caller to await."""
        sides = list(self.sides.values())
        for side in sides:
            side.cancel()
        return sides

    async def close(self) -> None:
        """Close the webhook HTTP session (if one was opened)."""
        if self._http is not None:
            await self._http.close()

    # ----------------------------------------------------------------- actions
    def perform(self, actions: list[fl.Action], *, inherit: TurnTimeline | None = None) -> None:
        """Carry out flow actions in order (nothing here awaits: slow work goes to tasks).

        Args:
            actions: the flow's actions.
            inherit: the timeline of a turn answered by these actions (a fixed text takes it over).
        """
        run = self.runner
        if inherit is not None:
            self._inherit = inherit
        for action in actions:
            if run.closed:
                break
            if isinstance(action, fl.ReplaceReply):
                self._replace_reply(action.turn_id)
            elif isinstance(action, fl.Say):
                self.say(action.text, flow_done=True)
            elif isinstance(action, fl.Reply | fl.Reprompt):
                self._flow_reply(action)
            elif isinstance(action, fl.CallWebhook):
                run.counters.webhooks += 1
                run.spawn(self._webhook(action))
            elif isinstance(action, fl.HangUp):
                run.outcome = "hangup"
                self.say(action.after_say, then=self.hang_up)
            elif isinstance(action, fl.Transfer):
                run.outcome = "transfer"
                self.say(action.after_say, then=self._transfer_later(action.to))
        self._inherit = None
        run.recorder.flow(run.flow)

    def _take_timeline(self) -> tuple[TurnTimeline, bool]:
        """The timeline of a fixed text: the replaced turn's (reported), else a private one."""
        if self._inherit is not None:
            tl, self._inherit = self._inherit, None
            return tl, True
        return TurnTimeline(self.runner.call_id, self.runner.turn_index), False

    def say(self, text: str, *, flow_done: bool = False, then: Callable[[], None] | None = None) -> None:
        """Speak a fixed text after whatever is playing; ``then`` runs once the caller heard it."""
        if not text.strip():
            if then is not None:
                then()
            return
        tl, report = self._take_timeline()
        reply = Reply(self.runner, tl, prompt_text="", speculative=False, report=report)
        if flow_done:
            reply.on_text_done = self.fixed_text_done
        if then is not None:
            fired: list[bool] = []

            def once() -> None:
                if not fired:
                    fired.append(True)
                    then()

            reply.after_played = once
        reply.start_fixed(text)
        self.runner.utter(reply)

    def _flow_reply(self, action: fl.Reply | fl.Reprompt) -> None:
        """An LLM reply from a node entered after a webhook (the caller waits for the answer)."""
        run = self.runner
        if run.flow is None or run.planner is None:
            return
        knowledge = run.turn_replies.knowledge(run.last_user)
        request = run.planner.request_for(run.flow, action, run.memory, knowledge=knowledge)
        tl, report = self._take_timeline()
        reply = Reply(run, tl, prompt_text="", speculative=False, report=report)
        reply.on_text_done = self.fixed_text_done
        reply.start_llm(request)
        run.utter(reply)

    def fixed_text_done(self, reply: Reply, text: str | None) -> None:
        """A flow utterance (fixed text or flow reply) has all its text: the flow may go on."""
        flow = self.runner.flow
        if flow is not None and not reply.stopped:
            self.flow_call(flow.on_reply_done)

    def _replace_reply(self, turn_id: int) -> None:
        """The turn's reply is wrong for the node just entered: stop it; the next action replaces it."""
        run = self.runner
        for reply in (run.speaking, run.speculation, *run.queued):
            if reply is None or reply.plan is None or reply.plan.turn_id != turn_id or reply.stopped:
                continue
            run.counters.replaced_replies += 1
            if reply is run.speaking and run.call is not None:
                played = run.call.clear().played_ms if reply.queued_upto else 0.0
                reply.pause(played)
                reply.interrupt()
                run.speaking = None
            if reply is run.speculation:
                run.speculation = None
            if reply in run.queued:
                run.queued.remove(reply)
            if reply.report and not reply.finished:
                reply.report = False
                self._inherit = reply.timeline
            run.spawn(reply.cancel())
            return

    async def _webhook(self, action: fl.CallWebhook) -> None:
        run = self.runner
        result: object = None
        error: str | None = None
        try:
            if self._http is None:
                self._http = aiohttp.ClientSession()
            timeout = aiohttp.ClientTimeout(total=action.timeout_s)
            async with self._http.post(action.url, json=action.payload, timeout=timeout) as resp:
                if resp.status >= 400:
                    error = f"HTTP {resp.status}"
                else:
                    result = await resp.json(content_type=None)
        except TimeoutError:
            error = f"timed out after {action.timeout_s:g} s"
        except (aiohttp.ClientError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        if error is not None:
            run.counters.webhook_failures += 1
            log.warning("call %s: webhook %s (%s) failed: %s", run.call_id, action.node_id, action.url, error)
        if run.flow is None or run.closed:
            return
        flow = run.flow
        self.flow_call(lambda: flow.on_function_result(result, error=error))

    # ----------------------------------------------------------------- hang up, transfer
    def _transfer_later(self, to: str) -> Callable[[], None]:
        return lambda: self.runner.spawn(self._transfer(to))

    def hang_up(self) -> None:
        """End the call (Call Control hang-up when there is a client, then the media socket)."""
        self.runner.spawn(self._end_call())

    async def _end_call(self) -> None:
        run = self.runner
        if run.control is not None:
            with contextlib.suppress(Exception):
                await run.control.hangup(run.call_id)
        if run.call is not None:
            run.call.hangup()

    async def _transfer(self, to: str) -> None:
        run = self.runner
        done = False
        if run.control is not None:
            try:
                done = await run.control.transfer(run.call_id, to)
            except Exception as exc:
                log.warning("call %s: transfer to %s failed: %s", run.call_id, to, exc)
        if not done:
            log.info("call %s: transfer to %s requested (no Call Control client)", run.call_id, to)
