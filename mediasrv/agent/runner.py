"""The voice-agent behaviour of a call: STT -> turn detector -> LLM -> TTS -> pacer.

Theory of operation (one call):

* Every inbound 20 ms frame goes to the STT untouched (mu-law passthrough) and to the VAD;
  the VAD result and the STT's transcript feed the :class:`~mediasrv.turns.TurnDetector`,
  in audio time (20 ms per frame received).
* ``user_paused`` (a tentative end of turn) starts a **speculative reply** from the partial
  transcript and asks the STT to finalize. The reply streams LLM text into its own TTS
  context at once, but its audio is held back: nothing speculative is played before the
  end of turn. ``user_resumed`` cancels it (LLM stream closed, TTS context closed).
* ``end_of_turn`` commits: if the final transcript matches what the speculation used
  (after normalising), the held audio is released to the pacer; otherwise the speculation
  is cancelled and a new reply starts from the final text. Hits and misses are counted.
  (Speculation and commit: :class:`~mediasrv.agent.turn_replies.TurnReplies`.)
* ``barge_in`` while the agent talks: in the same frame the pacer is cleared and Telnyx
  ``clear`` sent; then the TTS context is closed and the LLM stream cancelled. The history
  keeps only what the caller heard (played audio, in proportion to the reply's text).
* Each utterance is a :class:`~mediasrv.agent.reply.Reply` (one LLM stream or fixed text, one
  TTS context). Replies are cut by :class:`~mediasrv.agent.clauses.ClauseSplitter`: the first
  clause goes to the TTS as soon as it is complete, while the LLM still streams.

Agent modes:

* **Plain** (no nodes, no variables): the reply is the system prompt plus the history window.
* **Call flow** (nodes, or variables to extract): a :class:`~mediasrv.agent.flow.CallFlow` and
  the shared :class:`~mediasrv.agent.planner.TurnPlanner` plan each turn. The plan's reply
  streams at once (speculatively too: the flow turn is begun uncommitted and committed or
  abandoned with the speculation); its side call (extraction/transition, at most one) runs
  as a concurrent task, never in front of the reply. In the ``merged`` strategy the reply is
  JSON and :class:`~mediasrv.providers.llm.say.SayExtractor` streams its ``say`` field to the
  TTS. The flow's actions (say, reply, webhook, replace-reply, hang up, transfer) are
  performed by :class:`~mediasrv.agent.actions.FlowActions`; fixed texts queue behind the
  utterance that is playing.
* In both modes the knowledge base (built when the agent was loaded) is searched per turn and
  the chunks enter the system prompt of that turn's reply only.

Greeting: when the agent speaks first, a cached greeting
(:class:`~mediasrv.agent.greeting.GreetingCache`, filled by the service at start or by the
first call) is queued to the pacer in :meth:`AgentRunner.start` before the providers are
opened, so the first frame leaves within a few ms of ``start``.

Records: when a :class:`~mediasrv.records.RecordWriter` is given, the call start/end, the
transcript (caller text as committed, agent text as heard), variables, node path and every
turn summary are submitted through :class:`~mediasrv.agent.recorder.CallRecorder`
(``submit`` never blocks and is never awaited).

Every stage is stamped into the turn's :class:`~mediasrv.timing.TurnTimeline`; the summary
goes to the call record and to the ``on_turn`` listeners (the service logs it as one JSON
line per turn and feeds the Prometheus metrics).

The runner holds the call's state (what plays, what is queued, the speculation, the history)
and the per-frame path; its collaborators :class:`~mediasrv.agent.turn_replies.TurnReplies` and
:class:`~mediasrv.agent.actions.FlowActions` act on that state through the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgspec

from mediasrv.agent import flow as fl
from mediasrv.agent.actions import FlowActions
from mediasrv.agent.config import AgentConfig
from mediasrv.agent.conversation import ReplyPolicy
from mediasrv.agent.counters import CallCounters
from mediasrv.agent.failures import ProviderFailures
from mediasrv.agent.greeting import GreetingCache
from mediasrv.agent.kb import KnowledgeBase
from mediasrv.agent.planner import LLMRequest, TurnPlanner
from mediasrv.agent.ports import (
    CallControlPort,
    LlmEvent,
    LLMPort,
    SttEndpoint,
    SttFailure,
    STTPort,
    SttText,
    TtsAudio,
    TtsDone,
    TtsFailure,
    TTSPort,
)
from mediasrv.agent.prompts import ConversationMemory
from mediasrv.agent.recorder import CallRecorder
from mediasrv.agent.reply import Reply
from mediasrv.agent.supervisor import CallSupervisor, HangUp, LeaveMessage, SayAndHangUp, SayCheckIn
from mediasrv.agent.turn_replies import TurnReplies
from mediasrv.call import CallHandle
from mediasrv.codec import FRAME_MS
from mediasrv.errors import ProviderError
from mediasrv.metrics import FRAME_STAGES, FrameStage, Metrics
from mediasrv.providers.telnyx.stream import StreamStarted
from mediasrv.records import RecordWriter
from mediasrv.timing import TurnSummary, TurnTimeline
from mediasrv.turns import (
    Backchannel,
    BargeIn,
    EndOfTurn,
    OverlapDiscarded,
    OverlapStarted,
    TurnConfig,
    TurnDetector,
    UserPaused,
    UserResumed,
)
from mediasrv.turns.bargein import CallerVoiceGate
from mediasrv.turns.echo_guard import EchoGuard, text_is_echo
from mediasrv.vad import VadResult, VoiceActivityDetector
from mediasrv.vad_shell import BatchedVad

__all__ = ["AgentRunner", "CallCounters", "GreetingCache", "Reply", "wall_clock"]

log = logging.getLogger("mediasrv.agent")

SILENT_FRAME = b"\xff" * 160
"""mu-law silence: what the supervisor hears in place of a frame of our own echo."""
SPECULATE_MIN_MS = 40
SPECULATE_LEAD_MS = 660
"""``user_paused`` comes this long before the turn would end: with text that lags the audio
(the STT's last word not in yet, a 700 ms hold) that is 40 ms into the silence, and the
speculation restarts when the last word lands. Early speculation costs tokens, never
correctness: nothing speculative plays before the end of turn."""
AFTER_PLAYED_GRACE_S = 1.5
STALL_S = 0.5
"""While a turn is open, inbound frames missing this long count as silence: the time is fed
through the per-frame path as silent frames (STT included, so its audio time stays in step), so
a stream that stops sending still ends the caller's turn and starts the agent's reply. Half a
second is past any network jitter; frames that then arrive late, for time already heard as
silence, are dropped (counted), so the call's audio time never runs ahead of the stream."""
"""Hang up / transfer this long after the last audio should have played if no mark came back."""


def wall_clock() -> float:
    """Epoch seconds for call records (a shell's stamp; timelines use the loop's monotonic clock)."""
    return time.time()  # noqa: TID251 - records hold wall-clock times, read by people


class AgentRunner:
    """The agent behaviour of one call (see the module docstring).

    Args:
        config: the agent.
        stt, llm, tts: the provider ports of this call.
        on_turn: called with each finished turn's timeline.
        planner: the agent's planner (shared by its calls); None forces the plain mode.
        kb: the agent's knowledge base (built when the agent was loaded).
        records: the call-record writer.
        greetings: the service's greeting cache.
        control: Call Control (hang up, transfer) for this call.
        vad: the daemon's shared VAD batch; None runs a private detector (tests, tools).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        stt: STTPort,
        llm: LLMPort,
        tts: TTSPort,
        on_turn: Callable[[TurnTimeline], None] | None = None,
        planner: TurnPlanner | None = None,
        kb: KnowledgeBase | None = None,
        records: RecordWriter | None = None,
        greetings: GreetingCache | None = None,
        control: CallControlPort | None = None,
        vad: BatchedVad | None = None,
    ) -> None:
        self.config = config
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.on_turn = on_turn
        self.on_closed: Callable[[AgentRunner], None] | None = None
        """Called once :meth:`close` has run (the service lets go of the runner there)."""
        self.kb = kb
        self.recorder = CallRecorder(records)
        self.greetings = greetings
        self.control = control
        self.call: CallHandle | None = None
        self.call_id = "-"
        self._batched = vad
        self.vad = vad.detector() if vad is not None else VoiceActivityDetector()
        self._vad_pending: deque[tuple[bytes, float]] = deque()
        """Frames submitted to the shared VAD batch, awaiting their verdicts (in order)."""
        # Speculate early: a reply that turns out wrong is cancelled for the price of its tokens,
        # while a right one hides the LLM and TTS start-up behind the end-of-turn wait.
        self.turns = TurnDetector(
            TurnConfig(speculate_min_ms=SPECULATE_MIN_MS, speculate_lead_ms=SPECULATE_LEAD_MS)
        )
        self.counters = CallCounters()
        self.echo = EchoGuard()
        self.gate = CallerVoiceGate()
        """Whether a frame heard while we talk is the caller (the audio rules of barge-in)."""
        self.metrics: Metrics | None = None
        """Set by the service: per-frame step failures are counted there too."""
        self.frames_dropped: dict[FrameStage, int] = dict.fromkeys(FRAME_STAGES, 0)
        """This call's frames each per-frame step raised on (the frame went on without it)."""
        self._out_ms = 0
        self._last_frame_at = 0.0
        self._stall: asyncio.TimerHandle | None = None
        self._stall_owed = 0
        """Silent frames the stall watch put in for time the stream may still deliver late."""
        self.audio_ms = 0
        self.turn_index = 0
        self.timeline: TurnTimeline | None = None
        self.speculation: Reply | None = None
        self.speaking: Reply | None = None
        self.queued: list[Reply] = []
        """Fixed texts waiting for the utterance that is playing."""
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self._audible = False
        self.summaries: list[TurnSummary] = []
        self.profile: str | None = None
        """Latency profile of the emulators in use (set by the service; recorded per turn)."""
        # call flow
        use_flow = planner is not None and bool(config.nodes or config.variables)
        self.planner = planner if use_flow else None
        self.flow: fl.CallFlow | None = fl.CallFlow(config) if use_flow else None
        self.memory = ConversationMemory(config.history_turns)
        self.supervisor = CallSupervisor(config)
        """Dead air and voicemail (audio time: ``audio_ms``)."""
        self._unheard: list[Reply] = []
        """Utterances played (or playing) whose text is not yet in the memory and the records."""
        self.last_user = ""
        """The caller's last committed text."""
        self._after_mark: dict[str, Callable[[], None]] = {}
        self.outcome = "completed"
        # greeting / timing
        self.started_at = 0.0
        self.started_wall = 0.0
        self.greeting_first_frame_ms: float | None = None
        """``start`` received -> first greeting frame sent to Telnyx."""
        self.kb_ms_max = 0.0
        self.policy = ReplyPolicy(speculative=config.speculative)
        """Speculate, keep, drop, answer: the reply decisions (sans-I/O)."""
        # collaborators
        self.turn_replies = TurnReplies(self)
        self.actions = FlowActions(self)
        self.failures = ProviderFailures(self)

    # ----------------------------------------------------------------- Behaviour
    async def start(self, call: CallHandle, started: StreamStarted) -> None:
        """Play a cached greeting at once, open the providers, then speak an uncached greeting."""
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self.started_wall = wall_clock()
        self.call = call
        self.call_id = started.call_control_id or call.call_id
        self.recorder.call_started(
            self.call_id,
            started,
            agent=self.config.name,
            started_at=self.started_at,
            started_wall=self.started_wall,
        )
        call.add_frame_listener(self._on_frame_out)
        greet = self.config.first_speaker == "agent" and bool(self.config.greeting)
        cached = self.greetings.get(self.config) if greet and self.greetings is not None else None
        greeting: Reply | None = None
        if cached is not None:
            self.counters.greeting_cached = 1
            greeting = self._greeting_reply("greeting-cached")
            greeting.start_cached(self.config.greeting, cached)
            self.utter(greeting)
        opened = await asyncio.gather(
            self.stt.open(started.call_control_id or self.call_id), self.tts.open(), return_exceptions=True
        )
        for outcome in opened:  # a provider refusing the session: fallback line, not silence
            if isinstance(outcome, ProviderError):
                self.failures.report_exception(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        self._tasks.append(asyncio.create_task(self._stt_loop(), name=f"stt-{self.call_id}"))
        self._tasks.append(asyncio.create_task(self._tts_loop(), name=f"tts-{self.call_id}"))
        if self.failures.failed:
            return
        if greet and greeting is None:
            greeting = self._greeting_reply(None)
            if self.greetings is not None:
                cache = self.greetings
                greeting.on_complete_audio = lambda audio: cache.put(self.config, audio)
            greeting.start_fixed(self.config.greeting)
            self.utter(greeting)
        if self.flow is not None:
            self.actions.flow_call(self.flow.start)
            if greeting is not None and self.flow.state is fl.FlowState.LISTENING:
                self.actions.flow_call(self.flow.on_reply_done)

    def _greeting_reply(self, context_id: str | None) -> Reply:
        """The greeting's utterance (turn 0; its origin is the start of the stream)."""
        tl = TurnTimeline(self.call_id, 0)
        tl.reply = self.config.greeting
        tl.stamp("speech_end", self.started_at)  # the origin of a greeting: the stream started
        tl.stamp("eot", self.started_at)
        greeting = Reply(self, tl, prompt_text="", speculative=False, context_id=context_id)
        greeting.greeting = True
        return greeting

    def on_audio(self, ulaw: bytes, now: float) -> None:
        """Per 20 ms frame: STT passthrough, then the VAD; the rest runs on the VAD's verdict.

        With the daemon's shared batch (``vad``) the verdict comes in the loop's next
        iteration (:meth:`_on_vad_verdict`), with every other call's frames of this iteration;
        alone, at once. A step that raises is counted (:meth:`_frame_dropped`) and the call goes
        on without it.
        """
        self._last_frame_at = now
        if self._stall_owed:
            self._stall_owed -= 1  # late: its time was already heard as silence
            self.counters.late_frames_dropped += 1
            return
        self._frame(ulaw, now)

    def _frame(self, ulaw: bytes, now: float) -> None:
        self.stt.send_audio(ulaw)
        batched = self._batched
        if batched is not None:
            try:
                batched.submit(self.vad, ulaw, self._on_vad_verdict)
            except Exception:
                self.audio_ms += FRAME_MS
                self._frame_dropped("vad")
                return
            self._vad_pending.append((ulaw, now))
            return
        try:
            vad = self.vad.process_ulaw(ulaw)
        except Exception:
            self.audio_ms += FRAME_MS
            self._frame_dropped("vad")
            return  # no voice decision: the frame goes no further
        self._after_vad(ulaw, vad, now)

    def _on_vad_verdict(self, vad: VadResult) -> None:
        ulaw, now = self._vad_pending.popleft()
        if not self.closed:
            self._after_vad(ulaw, vad, now)

    def _after_vad(self, ulaw: bytes, vad: VadResult, now: float) -> None:
        """Echo guard, supervisor and turn detection for one frame and its VAD verdict."""
        self.audio_ms += FRAME_MS
        audible = self._agent_audible()
        sup = self.supervisor
        if audible is not self._audible:
            self._audible = audible
            self.turns.set_agent_speaking(audible, self.audio_ms)
            sup.on_agent_speaking(audible, self.audio_ms)
        heard, caller_active = ulaw, vad.active
        gate = self.gate
        if gate.watching(audible):
            # The gate sees every frame while we talk and a little after (the guard needs the
            # inbound history to find the echo path before the echo's first loud frame).
            vad = gate.judge(vad, audible, self._echo_likely(ulaw))
            self.counters.echo_frames = gate.echo_frames
            if gate.heard_echo:
                heard = SILENT_FRAME
            caller_active = gate.caller_active(vad)
        if not sup.finished:
            sup.on_frame(heard, caller_active, self.audio_ms)
            self.supervise()
        try:
            self.turns.on_vad(vad, self.audio_ms)
            self._handle_turn_events(now)
        except Exception:
            self._frame_dropped("turns")  # this frame's turn events are lost
        if self._stall is None and self.turns.next_deadline() is not None and not self.closed:
            self._stall = asyncio.get_running_loop().call_later(STALL_S, self._on_stall)

    def _on_stall(self) -> None:
        """A turn is open: if the stream stopped sending, hear the missing time as silence."""
        self._stall = None
        if self.closed or self.turns.next_deadline() is None:
            return
        now = asyncio.get_running_loop().time()
        gap = now - self._last_frame_at
        if gap >= STALL_S:
            missing = int(gap * 1000.0) // FRAME_MS
            self.counters.stalled_frames += missing
            self._stall_owed += missing
            self._last_frame_at = now
            for _ in range(missing):
                self._frame(SILENT_FRAME, now)
            gap = 0.0
        if self._stall is None and self.turns.next_deadline() is not None:
            self._stall = asyncio.get_running_loop().call_later(STALL_S - gap, self._on_stall)

    def _echo_likely(self, ulaw: bytes) -> bool:
        try:
            return self.echo.assess_inbound(ulaw, self.audio_ms).echo_likely
        except Exception:
            self._frame_dropped("echo")
            return False  # not judged: not echo, like a frame the guard cannot explain

    def _frame_dropped(self, stage: FrameStage) -> None:
        """Count a per-frame step that raised (in its ``except``) here and in ``/metrics``; log
        the 1st, 2nd, 4th, 8th... of each step (sampled: one failing on every frame must not
        flood the log)."""
        n = self.frames_dropped[stage] = self.frames_dropped[stage] + 1
        if self.metrics is not None:
            self.metrics.frame_dropped(stage)
        if n & (n - 1) == 0:
            log.warning("call %s: %s failed on a frame (%d so far)", self.call_id, stage, n, exc_info=n == 1)

    def on_mark(self, name: str, now: float) -> None:
        """A mark came back: the audio before it has played (hang up / transfer wait for it)."""
        action = self._after_mark.pop(name, None)
        if action is not None:
            action()

    def on_dtmf(self, digit: str, now: float) -> None:
        """DTMF is logged; call flows can act on it later."""
        log.info("call %s: dtmf %s", self.call_id, digit)

    async def close(self) -> None:
        """Cancel replies and side calls, close the providers, write the end of the call."""
        try:
            await self._close()
        finally:
            if self.on_closed is not None:
                self.on_closed(self)

    async def _close(self) -> None:
        self.closed = True
        if self._stall is not None:
            self._stall.cancel()
        if self._batched is not None:
            self._batched.release(self.vad)  # queued frames dropped, the slot freed
        else:
            self.vad.close()
        for reply in (self.speculation, self.speaking, *self.queued):
            if reply is not None:
                await reply.cancel()
        sides = self.actions.cancel_sides()
        for t in self._tasks:
            t.cancel()
        for t in [*self._tasks, *sides]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.flush_heard()
        self.recorder.flow(self.flow)
        await asyncio.gather(self.stt.close(), self.tts.close(), return_exceptions=True)
        await self.actions.close()
        self.recorder.call_ended(
            self.counters,
            outcome=self.outcome,
            ended_wall=wall_clock(),
            greeting_first_frame_ms=self.greeting_first_frame_ms,
        )

    # ----------------------------------------------------------------- helpers
    def stream(self, request: LLMRequest) -> AsyncIterator[LlmEvent]:
        """Start ``request`` on the LLM port."""
        return self.llm.stream(
            request.messages,
            response_format=request.response_format,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            purpose=request.purpose,
        )

    def _agent_audible(self) -> bool:
        # A reply paused by an overlap still holds the floor until the overlap is judged.
        paused = self.speaking is not None and self.speaking.paused
        return paused or (self.call is not None and self.call.is_speaking())

    def _on_frame_out(self, payload: bytes) -> None:
        # Place each frame at the audio time it will play: a burst sent ahead (the pacer's
        # lead) lines up frame after frame; after a silence the timeline restarts at "now".
        self._out_ms = max(self._out_ms + FRAME_MS, self.audio_ms)
        self.echo.note_outbound(payload, self._out_ms)

    def play(self, reply: Reply, ulaw: bytes) -> None:
        """Send a committed reply's audio to the pacer."""
        if self.call is None:
            return
        if not reply.first_queued:
            reply.first_queued = True
            self.call.notify_next_frame(lambda t: self._first_frame(reply, t))
        self.call.play(ulaw)

    def _first_frame(self, reply: Reply, t: float) -> None:
        reply.timeline.stamp("first_frame", t)
        if reply.greeting and self.greeting_first_frame_ms is None:
            self.greeting_first_frame_ms = round((t - self.started_at) * 1000.0, 1)
        if reply.report_on_frame:
            reply.report_on_frame = False
            self._report(reply.timeline)

    def finish_utterance(self, reply: Reply) -> None:
        """A committed reply has all its audio queued: pad, mark, report, start the next one."""
        if self.call is None or reply.finished:
            return
        reply.finished = True
        self.call.end_utterance()
        mark = f"reply-{reply.timeline.turn}-{reply.context_id}"
        self.call.mark(mark)
        if reply.after_played is not None:
            self._after_mark[mark] = reply.after_played
            remaining_s = max(0.0, reply.audio_ms / 1000.0 - reply.heard_ms / 1000.0)
            asyncio.get_running_loop().call_later(remaining_s + AFTER_PLAYED_GRACE_S, reply.after_played)
        if reply.report:
            if reply.first_queued and reply.timeline.get("first_frame") is None:
                reply.report_on_frame = True
            else:
                self._report(reply.timeline)
        if reply is self.speaking and self.queued:
            nxt = self.queued.pop(0)
            self.speaking = nxt
            self._unheard.append(nxt)
            nxt.commit()

    def _report(self, tl: TurnTimeline) -> None:
        summary = tl.summary()
        if self.profile is not None:
            summary = msgspec.structs.replace(summary, profile=self.profile)
        self.summaries.append(summary)
        self.recorder.submit(summary)
        if self.on_turn is not None:
            self.on_turn(tl)

    def utter(self, reply: Reply) -> None:
        """Play ``reply`` now, or after the utterance playing (fixed texts queue; they never overlap)."""
        current = self.speaking
        if current is None or current.stopped or current.finished:
            self.speaking = reply
            self._unheard.append(reply)
            reply.commit()
        else:
            self.queued.append(reply)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task of the call (cancelled and awaited by :meth:`close`)."""
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    # ----------------------------------------------------------------- STT / TTS loops
    async def _stt_loop(self) -> None:
        async for ev in self.stt.events():
            if isinstance(ev, SttText) and self._audible and self._is_text_echo(ev):
                self.counters.echo_transcripts += 1
                continue
            if isinstance(ev, SttText):
                if ev.final_delta.strip():
                    self.supervisor.on_caller_text(ev.final_delta, self.audio_ms)
                self.turns.on_tokens(ev.final_delta, ev.nonfinal, self.audio_ms, audio_end_ms=ev.audio_end_ms)
                self.turn_replies.refresh_speculation()
            elif isinstance(ev, SttEndpoint):
                self.turn_replies.on_stt_final(ev.at)
                self.turns.on_endpoint("end" if ev.kind == "end" else "fin", self.audio_ms)
            elif isinstance(ev, SttFailure):
                self.counters.stt_failures += 1
                self.failures.report(ev.provider, ev.code, ev.message)
            self._handle_turn_events(asyncio.get_running_loop().time())

    async def _tts_loop(self) -> None:
        async for ev in self.tts.events():
            if isinstance(ev, TtsFailure):
                self.failures.report(ev.provider, ev.code, ev.message)
                continue
            reply = self._reply_for(ev.context_id)
            if reply is None:
                continue
            if isinstance(ev, TtsAudio):
                reply.on_audio(ev)
            elif isinstance(ev, TtsDone):
                reply.on_done()

    def _reply_for(self, context_id: str) -> Reply | None:
        for r in (self.speaking, self.speculation, *self.queued):
            if r is not None and r.context_id == context_id:
                return r
        return None

    # ----------------------------------------------------------------- turn events
    def _handle_turn_events(self, now: float) -> None:
        for ev in self.turns.events_received():
            if isinstance(ev, UserPaused):
                self.turn_replies.on_paused(ev, now)
            elif isinstance(ev, UserResumed):
                self.turn_replies.drop_speculation()
            elif isinstance(ev, EndOfTurn):
                self.turn_replies.on_end_of_turn(ev, now)
            elif isinstance(ev, OverlapStarted):
                self._on_overlap_started(now)
            elif isinstance(ev, BargeIn):
                self._on_barge_in(now)
            elif isinstance(ev, (Backchannel, OverlapDiscarded)):
                self._on_false_interruption()

    def _is_text_echo(self, ev: SttText) -> bool:
        """The platform's text filter: words the STT hears while we talk that are our own."""
        heard = (ev.final_delta + ev.nonfinal).strip()
        recent = self.memory.recent_agent(4)
        if self.speaking is not None and self.speaking.text_sent:
            recent.append(self.speaking.text_sent)
        return bool(heard) and text_is_echo(heard, recent)

    def answer(self, reply: Reply, text: str) -> None:
        """Make ``reply`` the utterance playing now (a new turn supersedes anything still queued)."""
        previous = self.speaking
        for queued in self.queued:
            self.spawn(queued.cancel())
        self.queued.clear()
        self.speaking = reply
        if previous is not None and previous is not reply and not previous.done:
            self.spawn(previous.cancel())
        self._unheard.append(reply)
        self.supervisor.on_reply_started(self.audio_ms)
        reply.commit()
        if reply.task is not None:
            reply.task.add_done_callback(lambda _t: self._note_reply_text(reply))

    def _note_reply_text(self, reply: Reply) -> None:
        if not reply.stopped and reply.text_sent:
            reply.timeline.reply = reply.text_sent

    def _on_overlap_started(self, now: float) -> None:
        """Caller voice over the agent: silence the agent in this same frame, decide later."""
        reply = self.speaking
        if self.call is None or reply is None or reply.paused:
            return
        report = self.call.clear()
        reply.pause(report.played_ms)
        reply.timeline.stamp("overlap", now)

    def _on_false_interruption(self) -> None:
        """A backchannel or a noise: the agent goes on from where it stopped."""
        reply = self.speaking
        if reply is not None and reply.paused:
            self.counters.false_interruptions += 1
            reply.resume()

    def _on_barge_in(self, now: float) -> None:
        """A real interruption: drop the reply; the history keeps what the caller heard."""
        reply = self.speaking
        if self.call is None or reply is None:
            return
        if not reply.paused:
            reply.pause(self.call.clear().played_ms)
        self.counters.barge_ins += 1
        reply.timeline.barge_in = True
        reply.interrupt()
        self.speaking = None
        for queued in self.queued:
            self.spawn(queued.cancel())
        self.queued.clear()
        self.flush_heard()  # the memory keeps what the caller heard of it, and no more
        flow, plan = self.flow, reply.plan
        if flow is not None and plan is not None and not reply.text_complete:
            # The reply will not finish: its turn settles now, so the side result can still land.
            self.actions.flow_call(lambda: flow.on_reply_done(plan.turn_id))
        self.spawn(reply.cancel())

    # ----------------------------------------------------------------- supervisor
    def supervise(self) -> None:
        """Carry out the supervisor's dead-air and voicemail actions."""
        actions = self.supervisor.actions()
        if not actions:
            return
        if self.supervisor.hold_replies:
            self.turn_replies.drop_speculation()
        for action in actions:
            if isinstance(action, SayCheckIn):
                self.actions.say(action.text)
            elif isinstance(action, SayAndHangUp):
                self.outcome = action.reason
                self.actions.say(action.text, then=self.actions.hang_up)
            elif isinstance(action, HangUp):
                self.outcome = action.reason
                self.actions.hang_up()
            elif isinstance(action, LeaveMessage):
                self.outcome = "voicemail_message"
                self.actions.say(action.text, then=self.actions.hang_up)

    # ----------------------------------------------------------------- memory and records
    def flush_heard(self) -> None:
        """Move what the caller heard of the finished utterances into the memory and the records."""
        keep: list[Reply] = []
        for reply in self._unheard:
            if not (reply.stopped or reply.done or self.closed):
                keep.append(reply)  # still being written: its text is not final
                continue
            text = reply.spoken()
            if text:
                self.memory.add_agent(text)
                self.recorder.line("agent", text)
        self._unheard = keep
