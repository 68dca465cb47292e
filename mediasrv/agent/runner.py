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
* ``barge_in`` while the agent talks: in the same frame the pacer is cleared and Telnyx
  ``clear`` sent; then the TTS context is closed and the LLM stream cancelled. The history
  keeps only what the caller heard (played audio, in proportion to the reply's text).
* Replies are cut by :class:`~mediasrv.agent.clauses.ClauseSplitter`: the first clause goes
  to the TTS as soon as it is complete, while the LLM still streams.

Agent modes:

* **Plain** (no nodes, no variables): the reply is the system prompt plus the history window.
* **Call flow** (nodes, or variables to extract): a :class:`~mediasrv.agent.flow.CallFlow` and
  the shared :class:`~mediasrv.agent.planner.TurnPlanner` plan each turn. The plan's reply
  streams at once (speculatively too: the flow turn is begun uncommitted and committed or
  abandoned with the speculation); its side call (extraction/transition, at most one) runs
  as a concurrent task, never in front of the reply. In the ``merged`` strategy the reply is
  JSON and :class:`~mediasrv.providers.llm.say.SayExtractor` streams its ``say`` field to the
  TTS. The flow's actions (say, reply, webhook, replace-reply, hang up, transfer) are
  performed here; fixed texts queue behind the utterance that is playing.
* In both modes the knowledge base (built when the agent was loaded) is searched per turn and
  the chunks enter the system prompt of that turn's reply only.

Greeting: when the agent speaks first, a cached greeting (:class:`GreetingCache`, filled by the
service at start or by the first call) is queued to the pacer in :meth:`AgentRunner.start`
before the providers are opened, so the first frame leaves within a few ms of ``start``.

Records: when a :class:`~mediasrv.records.RecordWriter` is given, the call start/end, the
transcript (caller text as committed, agent text as heard), variables, node path and every
turn summary are submitted (``submit`` never blocks and is never awaited).

Every stage is stamped into the turn's :class:`~mediasrv.timing.TurnTimeline`; the summary
is logged as one JSON line per turn and handed to ``on_turn`` listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import msgspec

from mediasrv.agent import flow as fl
from mediasrv.agent.clauses import ClauseSplitter, normalise
from mediasrv.agent.config import AgentConfig
from mediasrv.agent.kb import KnowledgeBase
from mediasrv.agent.planner import LLMRequest, TurnPlan, TurnPlanner
from mediasrv.agent.ports import (
    CallControlPort,
    LlmDelta,
    LlmEvent,
    LLMPort,
    SttEndpoint,
    SttFailure,
    STTPort,
    SttText,
    TtsAudio,
    TtsDone,
    TTSPort,
)
from mediasrv.agent.prompts import ConversationMemory
from mediasrv.agent.supervisor import CallSupervisor, HangUp, LeaveMessage, SayAndHangUp, SayCheckIn
from mediasrv.call import CallHandle
from mediasrv.errors import FlowError
from mediasrv.providers.llm.say import SayExtractor
from mediasrv.providers.telnyx.stream import StreamStarted
from mediasrv.records import CallEnd, CallStart, NodeEntered, RecordWriter, TranscriptLine, VariableSet
from mediasrv.timing import TurnSummary, TurnTimeline
from mediasrv.turns import (
    Backchannel,
    BargeIn,
    Completeness,
    EndOfTurn,
    OverlapDiscarded,
    OverlapStarted,
    TurnConfig,
    TurnDetector,
    TurnState,
    UserPaused,
    UserResumed,
    assess_completeness,
)
from mediasrv.turns.echo import EchoGuard, text_is_echo
from mediasrv.vad import VadResult, VoiceActivityDetector

log = logging.getLogger("mediasrv.agent")

FRAME_MS = 20
ULAW_BYTES_PER_MS = 8
ECHO_FRAME = VadResult(prob=0.0, speech=False, active=False, energy_db=0.0, noise_db=0.0)
"""What the turn detector sees for a frame the echo guard attributes to our own voice."""
SILENT_FRAME = b"\xff" * 160
"""mu-law silence: what the supervisor hears in place of a frame of our own echo."""
ECHO_TAIL_FRAMES = 15
"""Frames the echo guard keeps judging after our audio stops (the echo path's delay)."""
ECHO_DEBOUNCE_FRAMES = 2
"""Consecutive unexplained voice frames before caller voice over the agent counts."""
SPECULATE_MIN_MS = 40
SPECULATE_LEAD_MS = 660
"""``user_paused`` comes this long before the turn would end: with text that lags the audio
(the STT's last word not in yet, a 700 ms hold) that is 40 ms into the silence, and the
speculation restarts when the last word lands. Early speculation costs tokens, never
correctness: nothing speculative plays before the end of turn."""
FINALIZE_MIN_GAP_MS = 2000
"""Silence after the caller's last voice frame before a speculative reply may start."""
RESUME_REWIND_BYTES = 1600
"""After a false interruption, resume 200 ms before the point where the agent was cut off."""
AFTER_PLAYED_GRACE_S = 1.5
"""Hang up / transfer this long after the last audio should have played if no mark came back."""
SORRY = "Sorry, could you say that again?"

GreetingKey = tuple[str, str, str, str]
"""(agent name, voice id, TTS output format, greeting text)."""


def wall_clock() -> float:
    """Epoch seconds for call records (a shell's stamp; timelines use the loop's monotonic clock)."""
    return time.time()  # noqa: TID251 - records hold wall-clock times, read by people


class GreetingCache:
    """Greeting audio (8 kHz mu-law) per (agent, voice, output format, text), shared by the calls
    of a service. Filled once (service start, or the first call); read from memory afterwards."""

    def __init__(self) -> None:
        self._audio: dict[GreetingKey, bytes] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(agent: AgentConfig) -> GreetingKey:
        """The cache key of ``agent``'s greeting."""
        return (agent.name, agent.tts.voice_id, agent.tts.output_format, agent.greeting)

    def get(self, agent: AgentConfig) -> bytes | None:
        """The cached audio, or None (counts hits and misses)."""
        audio = self._audio.get(self.key(agent))
        if audio is None:
            self.misses += 1
        else:
            self.hits += 1
        return audio

    def put(self, agent: AgentConfig, ulaw: bytes) -> None:
        """Keep the audio of a completely synthesised greeting."""
        if ulaw:
            self._audio[self.key(agent)] = ulaw


class CallCounters(msgspec.Struct, kw_only=True):
    """Per-call agent counters."""

    turns: int = 0
    speculative_hits: int = 0
    speculative_misses: int = 0
    speculative_cancelled: int = 0
    barge_ins: int = 0
    false_interruptions: int = 0
    echo_frames: int = 0
    echo_transcripts: int = 0
    stt_failures: int = 0
    llm_failures: int = 0
    llm_requests: int = 0
    """Reply LLM streams opened (speculative ones included); side calls are counted apart."""
    side_calls: int = 0
    side_failures: int = 0
    replaced_replies: int = 0
    webhooks: int = 0
    webhook_failures: int = 0
    greeting_cached: int = 0


class Reply:
    """One agent utterance: an LLM stream (or a fixed text, or cached audio) feeding one TTS context.

    Audio is held until :meth:`commit`; after that every chunk goes to the pacer at once.

    Args:
        runner: the call's runner.
        timeline: the turn's timeline (stamped as the reply progresses).
        prompt_text: the caller text the reply answers ("" for fixed texts).
        speculative: started before the end of turn.
        plan: the call-flow plan of the turn (call-flow mode).
        report: report the timeline when the reply has all its audio queued.
    """

    def __init__(
        self,
        runner: AgentRunner,
        timeline: TurnTimeline,
        *,
        prompt_text: str,
        speculative: bool,
        plan: TurnPlan | None = None,
        report: bool = True,
        context_id: str | None = None,
    ) -> None:
        self.runner = runner
        self.timeline = timeline
        self.prompt_text = prompt_text
        self.speculative = speculative
        self.plan = plan
        self.report = report
        self.synthetic = context_id is not None
        self.context_id = context_id if context_id is not None else runner.tts.new_context()
        self.committed = False
        self.cancelled = False
        self.done = False
        self.finished = False
        """All audio handed to the pacer (set by :meth:`AgentRunner.finish_utterance`)."""
        self.text_sent = ""
        self.raw_text = ""
        """Everything the LLM streamed (merged mode: the JSON document)."""
        self.audio = bytearray()
        """Every byte of this reply's audio (8 kHz mu-law), so a paused reply can resume."""
        self.queued_upto = 0
        """How much of ``audio`` has been handed to the pacer."""
        self.paused = False
        self.interrupted = False
        self.heard_ms = 0.0
        self.first_queued = False
        self.greeting = False
        self.report_on_frame = False
        """Report the timeline once the first frame is out (all audio was queued before it left)."""
        self.text_complete = False
        """The text is complete (``on_text_done`` ran)."""
        self.task: asyncio.Task[None] | None = None
        self.on_text_done: Callable[[Reply, str | None], None] | None = None
        """Called when the text is complete (the LLM stream ended; None when it failed)."""
        self.after_played: Callable[[], None] | None = None
        """Called once the caller has heard the whole utterance (hang up, transfer)."""
        self.on_complete_audio: Callable[[bytes], None] | None = None
        """Called with all the audio when the TTS context finished (the greeting cache)."""

    def start_llm(self, request: LLMRequest, *, say_field: str | None = None) -> None:
        """Stream the LLM's answer into the TTS context (in a task)."""
        self.task = asyncio.create_task(self._run_llm(request, say_field), name=f"reply-{self.context_id}")

    def start_fixed(self, text: str) -> None:
        """Speak a fixed text (greeting, script, goodbye) through the TTS context."""
        self.task = asyncio.create_task(self._run_fixed(text), name=f"say-{self.context_id}")

    def start_cached(self, text: str, ulaw: bytes) -> None:
        """Use audio synthesised earlier (the cached greeting): nothing goes to the TTS."""
        self.text_sent = text
        self.audio += ulaw
        self.done = True

    async def _run_fixed(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        self.timeline.stamp("tts_first_text", loop.time())
        self.text_sent = text
        try:
            await self.runner.tts.send_text(self.context_id, text)
            await self.runner.tts.end(self.context_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call %s: TTS refused a fixed text: %s", self.runner.call_id, exc)
            self.on_done()
        self.text_complete = True
        if self.on_text_done is not None:
            self.on_text_done(self, text)

    async def _run_llm(self, request: LLMRequest, say_field: str | None) -> None:
        loop = asyncio.get_running_loop()
        tl = self.timeline
        # A restarted speculation owns the timeline from here: drop the stamps of the one before.
        for stale in ("llm_ttft", "llm_done", "tts_first_text", "tts_ttfb"):
            tl.stamps.pop(stale, None)
        tl.stamp("llm_start", loop.time(), overwrite=True)
        tl.llm_requests += 1
        self.runner.counters.llm_requests += 1
        splitter = ClauseSplitter()
        say = SayExtractor(say_field) if say_field else None
        raw: list[str] = []
        result: str | None = None
        try:
            async for ev in self.runner.stream(request):
                if not isinstance(ev, LlmDelta) or not ev.text:
                    continue
                tl.stamp("llm_ttft", ev.at)
                raw.append(ev.text)
                text = say.feed(ev.text) if say is not None else ev.text
                if text:
                    for piece in splitter.push(text):
                        await self._speak(piece)
            tl.stamp("llm_done", loop.time())
            rest = splitter.flush()
            if rest.strip():
                await self._speak(rest)
            if not self.text_sent:
                await self._speak(SORRY)
            result = self.raw_text = "".join(raw)
            await self.runner.tts.end(self.context_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.runner.counters.llm_failures += 1
            log.warning("call %s: reply failed: %s", self.runner.call_id, exc)
            with contextlib.suppress(Exception):
                if not self.text_sent:
                    await self._speak(SORRY)
                await self.runner.tts.end(self.context_id)
        self.text_complete = True
        if self.on_text_done is not None:
            self.on_text_done(self, result)

    async def _speak(self, piece: str) -> None:
        if not self.text_sent:
            self.timeline.stamp("tts_first_text", asyncio.get_running_loop().time())
        self.text_sent += piece
        await self.runner.tts.send_text(self.context_id, piece)

    def on_audio(self, chunk: TtsAudio) -> None:
        """A TTS chunk for this reply arrived: keep it, and play it if the reply is live."""
        if self.cancelled:
            return
        self.timeline.stamp("tts_ttfb", chunk.at)
        self.audio += chunk.ulaw
        if self.committed and not self.paused:
            self._play_rest()

    def on_done(self) -> None:
        """The TTS context finished."""
        if self.done:
            return
        self.done = True
        if self.on_complete_audio is not None and not self.cancelled:
            self.on_complete_audio(bytes(self.audio))
        if self.committed and not self.cancelled and not self.paused:
            self.runner.finish_utterance(self)

    def commit(self) -> None:
        """Release held audio and play the rest as it comes."""
        self.committed = True
        self._play_rest()
        if self.done:
            self.runner.finish_utterance(self)

    def pause(self, played_ms: float) -> None:
        """The caller started talking over us: stop here, keep the rest for :meth:`resume`."""
        self.paused = True
        # Resume a little before the cut, on a frame boundary, so the listener re-catches the word.
        played = int(played_ms) * ULAW_BYTES_PER_MS
        self.queued_upto = max(0, (played - RESUME_REWIND_BYTES) // 160 * 160)
        self.heard_ms = max(self.heard_ms, played_ms)

    def resume(self) -> None:
        """A false interruption: play on from where we paused."""
        if not self.paused or self.cancelled:
            return
        self.paused = False
        self._play_rest()
        if self.done:
            self.runner.finish_utterance(self)

    def _play_rest(self) -> None:
        if self.queued_upto < len(self.audio):
            self.runner.play(self, bytes(self.audio[self.queued_upto :]))
            self.queued_upto = len(self.audio)

    @property
    def audio_ms(self) -> float:
        """Milliseconds of audio the TTS produced for this reply so far."""
        return len(self.audio) / ULAW_BYTES_PER_MS

    async def cancel(self) -> None:
        """Stop the LLM stream and the TTS context; drop held audio."""
        if self.cancelled:
            return
        self.cancelled = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if not self.synthetic:
            with contextlib.suppress(Exception):
                await self.runner.tts.close_context(self.context_id)

    def heard_text(self, played_ms: float) -> str:
        """The part of the reply's text the caller heard, by the share of audio played."""
        if self.audio_ms <= 0 or not self.text_sent:
            return ""
        share = min(1.0, played_ms / self.audio_ms)
        words = self.text_sent.split()
        return " ".join(words[: int(round(len(words) * share))])

    def spoken(self) -> str:
        """What the caller heard of this utterance (all of it unless it was interrupted or dropped)."""
        if self.interrupted:
            return self.heard_text(self.heard_ms)
        return "" if self.cancelled else self.text_sent.strip()


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
    ) -> None:
        self.config = config
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.on_turn = on_turn
        self.kb = kb
        self.records = records
        self.greetings = greetings
        self.control = control
        self.call: CallHandle | None = None
        self.call_id = "-"
        self.vad = VoiceActivityDetector()
        # Speculate early: a reply that turns out wrong is cancelled for the price of its tokens,
        # while a right one hides the LLM and TTS start-up behind the end-of-turn wait.
        self.turns = TurnDetector(
            TurnConfig(speculate_min_ms=SPECULATE_MIN_MS, speculate_lead_ms=SPECULATE_LEAD_MS)
        )
        self._last_finalize_ms = -FINALIZE_MIN_GAP_MS
        self.counters = CallCounters()
        self.echo = EchoGuard()
        self._out_ms = 0
        self._echo_tail = 0
        self._voice_run = 0
        self.history: list[dict[str, Any]] = []
        self.audio_ms = 0
        self.turn_index = 0
        self.timeline: TurnTimeline | None = None
        self.speculation: Reply | None = None
        self.speaking: Reply | None = None
        self._queued: list[Reply] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
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
        self._sides: dict[int, asyncio.Task[None]] = {}
        self._unheard: list[Reply] = []
        """Utterances played (or playing) whose text is not yet in the memory and the records."""
        self._inherit: TurnTimeline | None = None
        self._last_user = ""
        self._recorded_path = 0
        self._recorded_vars: dict[str, object] = {}
        self._http: aiohttp.ClientSession | None = None
        self._after_mark: dict[str, Callable[[], None]] = {}
        self.outcome = "completed"
        # greeting / timing
        self.started_at = 0.0
        self.started_wall = 0.0
        self.greeting_first_frame_ms: float | None = None
        """``start`` received -> first greeting frame sent to Telnyx."""
        self.kb_ms_max = 0.0

    # ----------------------------------------------------------------- Behaviour
    async def start(self, call: CallHandle, started: StreamStarted) -> None:
        """Play a cached greeting at once, open the providers, then speak an uncached greeting."""
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self.started_wall = wall_clock()
        self.call = call
        self.call_id = started.call_control_id or call.call_id
        self._submit(
            CallStart(
                call_id=self.call_id,
                started_at=self.started_wall,
                agent=self.config.name,
                from_number=started.from_,
                to_number=started.to,
            )
        )
        call.add_frame_listener(self._on_frame_out)
        greet = self.config.first_speaker == "agent" and bool(self.config.greeting)
        cached = self.greetings.get(self.config) if greet and self.greetings is not None else None
        greeting: Reply | None = None
        if greet:
            tl = TurnTimeline(self.call_id, 0)
            tl.reply = self.config.greeting
            tl.stamp("speech_end", self.started_at)  # the origin of a greeting: the stream started
            tl.stamp("eot", self.started_at)
            if cached is not None:
                self.counters.greeting_cached = 1
                greeting = Reply(self, tl, prompt_text="", speculative=False, context_id="greeting-cached")
                greeting.greeting = True
                greeting.start_cached(self.config.greeting, cached)
                self._utter(greeting)
        await asyncio.gather(self.stt.open(started.call_control_id or self.call_id), self.tts.open())
        self._tasks.append(asyncio.create_task(self._stt_loop(), name=f"stt-{self.call_id}"))
        self._tasks.append(asyncio.create_task(self._tts_loop(), name=f"tts-{self.call_id}"))
        if greet and greeting is None:
            tl = TurnTimeline(self.call_id, 0)
            tl.reply = self.config.greeting
            tl.stamp("speech_end", self.started_at)
            tl.stamp("eot", self.started_at)
            greeting = Reply(self, tl, prompt_text="", speculative=False)
            greeting.greeting = True
            if self.greetings is not None:
                cache = self.greetings
                greeting.on_complete_audio = lambda audio: cache.put(self.config, audio)
            greeting.start_fixed(self.config.greeting)
            self._utter(greeting)
        if greeting is not None:
            self.history.append({"role": "assistant", "content": self.config.greeting})
        if self.flow is not None:
            self._flow_call(self.flow.start)
            if greeting is not None and self.flow.state is fl.FlowState.LISTENING:
                self._flow_call(self.flow.on_reply_done)

    def on_audio(self, ulaw: bytes, now: float) -> None:
        """Per 20 ms frame: STT passthrough, VAD, turn detection."""
        self.stt.send_audio(ulaw)
        self.audio_ms += FRAME_MS
        audible = self._agent_audible()
        sup = self.supervisor
        if audible is not self._audible:
            self._audible = audible
            self.turns.set_agent_speaking(audible, self.audio_ms)
            sup.on_agent_speaking(audible, self.audio_ms)
        vad = self.vad.process_ulaw(ulaw)
        heard, caller_active = ulaw, vad.active
        if audible or self._echo_tail:
            # The guard sees every frame while we talk (it needs the inbound history to find
            # the echo path before the echo's first loud frame), and a little after.
            self._echo_tail = ECHO_TAIL_FRAMES if audible else self._echo_tail - 1
            echo = self.echo.assess_inbound(ulaw, self.audio_ms).echo_likely
            if echo:
                heard = SILENT_FRAME
            if vad.speech and echo:
                # Our own voice coming back (speakerphone): never let it open an overlap,
                # and never let the supervisor take it for a caller's monologue or a beep.
                self.counters.echo_frames += 1
                self._voice_run = 0
                vad = ECHO_FRAME
            elif audible and vad.speech:
                # Caller voice over the agent must last ECHO_DEBOUNCE_FRAMES frames: a single
                # frame the guard could not explain is not enough to cut the agent off.
                self._voice_run += 1
                if self._voice_run < ECHO_DEBOUNCE_FRAMES:
                    vad = ECHO_FRAME
            else:
                self._voice_run = 0
            # While our audio may be on the line, only voice the guard could not explain is
            # the caller's (the VAD's hangover over our own echo is not).
            caller_active = vad.active and vad.speech
        if not sup.finished:
            sup.on_frame(heard, caller_active, self.audio_ms)
            self._supervise()
        self.turns.on_vad(vad, self.audio_ms)
        self._handle_turn_events(now)

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
        self._closed = True
        for reply in (self.speculation, self.speaking, *self._queued):
            if reply is not None:
                await reply.cancel()
        for side in list(self._sides.values()):
            side.cancel()
        for t in self._tasks:
            t.cancel()
        for t in [*self._tasks, *self._sides.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._flush_heard()
        self._record_flow()
        await asyncio.gather(self.stt.close(), self.tts.close(), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        counters = {k: float(v) for k, v in msgspec.structs.asdict(self.counters).items()}
        if self.greeting_first_frame_ms is not None:
            counters["greeting_first_frame_ms"] = self.greeting_first_frame_ms
        end = CallEnd(call_id=self.call_id, ended_at=wall_clock(), outcome=self.outcome, counters=counters)
        self._submit(end)

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

    def _submit(self, record: Any) -> None:
        if self.records is not None:
            self.records.submit(record)

    def _t(self) -> float:
        return round(asyncio.get_running_loop().time() - self.started_at, 3)

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
        if reply is self.speaking and self._queued:
            nxt = self._queued.pop(0)
            self.speaking = nxt
            self._unheard.append(nxt)
            nxt.commit()

    def _report(self, tl: TurnTimeline) -> None:
        summary = tl.summary()
        if self.profile is not None:
            summary = msgspec.structs.replace(summary, profile=self.profile)
        self.summaries.append(summary)
        self._submit(summary)
        if self.on_turn is not None:
            self.on_turn(tl)

    def _utter(self, reply: Reply) -> None:
        """Play ``reply`` now, or after the utterance playing (fixed texts queue; they never overlap)."""
        current = self.speaking
        if current is None or current.cancelled or current.finished:
            self.speaking = reply
            self._unheard.append(reply)
            reply.commit()
        else:
            self._queued.append(reply)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
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
                self._refresh_speculation()
            elif isinstance(ev, SttEndpoint):
                if self.timeline is not None:
                    self.timeline.stamp("stt_final", ev.at)
                self.turns.on_endpoint("end" if ev.kind == "end" else "fin", self.audio_ms)
            elif isinstance(ev, SttFailure):
                self.counters.stt_failures += 1
                log.warning("call %s: STT failed: %s", self.call_id, ev.message)
            self._handle_turn_events(asyncio.get_running_loop().time())

    async def _tts_loop(self) -> None:
        async for ev in self.tts.events():
            reply = self._reply_for(ev.context_id)
            if reply is None:
                continue
            if isinstance(ev, TtsAudio):
                reply.on_audio(ev)
            elif isinstance(ev, TtsDone):
                reply.on_done()

    def _reply_for(self, context_id: str) -> Reply | None:
        for r in (self.speaking, self.speculation, *self._queued):
            if r is not None and r.context_id == context_id:
                return r
        return None

    # ----------------------------------------------------------------- turn events
    def _handle_turn_events(self, now: float) -> None:
        for ev in self.turns.events_received():
            if isinstance(ev, UserPaused):
                self._on_paused(ev, now)
            elif isinstance(ev, UserResumed):
                self._drop_speculation()
            elif isinstance(ev, EndOfTurn):
                self._on_end_of_turn(ev, now)
            elif isinstance(ev, OverlapStarted):
                self._on_overlap_started(now)
            elif isinstance(ev, BargeIn):
                self._on_barge_in(now)
            elif isinstance(ev, (Backchannel, OverlapDiscarded)):
                self._on_false_interruption()

    def _new_timeline(self, now: float) -> TurnTimeline:
        if self.timeline is None:
            self.turn_index += 1
            self.timeline = TurnTimeline(self.call_id, self.turn_index)
        return self.timeline

    def _knowledge(self, text: str) -> str:
        if self.kb is None or not text.strip():
            return ""
        t0 = time.perf_counter()
        block = self.kb.prompt_block(text)
        self.kb_ms_max = max(self.kb_ms_max, (time.perf_counter() - t0) * 1000.0)
        return block

    def _messages(self, user_text: str) -> list[dict[str, Any]]:
        window = self.history[-2 * self.config.history_turns :]
        system = self.config.system_prompt
        knowledge = self._knowledge(user_text)
        if knowledge:
            system = f"{system}\n\n{knowledge}"
        return [{"role": "system", "content": system}, *window, {"role": "user", "content": user_text}]

    def _plain_request(self, text: str) -> LLMRequest:
        return LLMRequest(
            purpose="reply",
            messages=self._messages(text),
            max_tokens=self.config.llm.max_tokens,
            temperature=self.config.llm.temperature,
        )

    def _start_turn(self, tl: TurnTimeline, text: str, *, speculative: bool) -> Reply | None:
        """Start the reply (and the side call) for ``text``; None when no LLM reply is needed."""
        self._flush_heard()
        if self.flow is None or self.planner is None:
            reply = Reply(self, tl, prompt_text=text, speculative=speculative)
            reply.start_llm(self._plain_request(text))
            return reply
        if self.flow.finished:
            return None
        try:
            plan = self.planner.plan_turn(
                self.flow, text, self.memory, committed=not speculative, knowledge=self._knowledge(text)
            )
        except FlowError as exc:
            log.warning("call %s: flow refused a turn: %s", self.call_id, exc)
            return None
        if plan.reply is None:
            if speculative:  # a cached jump to a fixed text: wait for the end of turn
                self._abandon(plan)
                return None
            self._inherit = tl
            self._perform(plan.actions)
            return None
        reply = Reply(self, tl, prompt_text=text, speculative=speculative, plan=plan)
        reply.on_text_done = self._turn_text_done
        reply.start_llm(plan.reply, say_field=plan.say_field)
        if plan.side is not None:
            self._start_side(plan, tl)
        if not speculative and plan.actions:
            self._perform(plan.actions)
        return reply

    def _abandon(self, plan: TurnPlan | None) -> None:
        if plan is None or self.flow is None:
            return
        side = self._sides.pop(plan.turn_id, None)
        if side is not None:
            side.cancel()
        with contextlib.suppress(FlowError):
            self.flow.abandon_turn(plan.turn_id)

    def _on_paused(self, ev: UserPaused, now: float) -> None:
        tl = self._new_timeline(now)
        tl.stamp("user_paused", now)
        # Soniox: "do not send [finalize] more than every few seconds".
        if self.audio_ms - self._last_finalize_ms >= FINALIZE_MIN_GAP_MS:
            self._last_finalize_ms = self.audio_ms
            self.stt.finalize()
        text = getattr(ev, "text", "") or ""
        if not self.config.speculative or not text.strip() or self.supervisor.hold_replies:
            return
        self._drop_speculation()
        self.speculation = self._start_turn(tl, text, speculative=True)

    def _is_text_echo(self, ev: SttText) -> bool:
        """The platform's text filter: words the STT hears while we talk that are our own."""
        heard = (ev.final_delta + ev.nonfinal).strip()
        recent = [m["content"] for m in self.history[-4:] if m.get("role") == "assistant"]
        if self.speaking is not None and self.speaking.text_sent:
            recent.append(self.speaking.text_sent)
        return bool(heard) and text_is_echo(heard, recent)

    def _refresh_speculation(self) -> None:
        """Keep the speculative reply on the freshest words (early kick-off on partials).

        During a pause, new words restart the speculation on the fresher text. While the VAD
        still hears the caller (line noise can hold it on after the last word), a transcript
        that already reads as a finished sentence starts one too; words that make it
        unfinished again drop it. Nothing speculative plays before the end of turn.
        """
        state = self.turns.state
        spec = self.speculation
        text = self.turns.turn_text
        if state is TurnState.USER_PAUSED:
            if spec is None or self.timeline is None or not text.strip():
                return
            if normalise(text) != normalise(spec.prompt_text):
                self._drop_speculation()
                self.speculation = self._start_turn(self.timeline, text, speculative=True)
            return
        if state not in (TurnState.USER_SPEAKING, TurnState.USER_PAUSING):
            return
        if spec is not None and normalise(text) == normalise(spec.prompt_text):
            return
        finished = bool(text.strip()) and assess_completeness(text).verdict is Completeness.COMPLETE
        if spec is not None:
            self._drop_speculation()
        if finished and self.config.speculative and not self.supervisor.hold_replies:
            tl = self._new_timeline(asyncio.get_running_loop().time())
            self.speculation = self._start_turn(tl, text, speculative=True)

    def _drop_speculation(self) -> None:
        spec, self.speculation = self.speculation, None
        self._drop_speculation_of(spec)

    def _drop_speculation_of(self, spec: Reply | None) -> None:
        if spec is not None:
            self.counters.speculative_cancelled += 1
            self._abandon(spec.plan)
            self._spawn(spec.cancel())

    def _on_end_of_turn(self, ev: EndOfTurn, now: float) -> None:
        tl = self._new_timeline(now)
        tl.stamp("eot", now)
        tl.stamp("vad_end", now - ev.silence_ms / 1000.0, overwrite=True)
        text = ev.text
        tl.text = text
        self.timeline = None
        spec = self.speculation
        if not text.strip() and spec is None:
            return  # a wordless turn (noise the VAD took for speech): nothing to answer
        self.counters.turns += 1
        self.speculation = None
        self.supervisor.on_turn_committed(self.audio_ms)
        if self.supervisor.hold_replies:  # a machine answered: say nothing until the message
            self._drop_speculation_of(spec)
            self._supervise()
            return
        if spec is not None and normalise(spec.prompt_text) == normalise(text):
            self.counters.speculative_hits += 1
            tl.speculative = "hit"
            actions: list[fl.Action] = []
            flow, plan = self.flow, spec.plan
            if flow is not None and plan is not None:
                actions = self._flow_try(lambda: flow.commit_turn(plan.turn_id))
            self._record_caller(text)
            self._answer(spec, text)
            self._perform(actions)
            return
        if spec is not None:
            self.counters.speculative_misses += 1
            tl.speculative = "miss"
            self._abandon(spec.plan)
            self._spawn(spec.cancel())
        if not text.strip():
            return
        reply = self._start_turn(tl, text, speculative=False)  # plans with the memory before this turn
        self._record_caller(text)
        if reply is not None:
            self._answer(reply, text)
        else:
            self.history.append({"role": "user", "content": text})

    def _record_caller(self, text: str) -> None:
        self._last_user = text
        self.memory.add_user(text)
        self._submit(TranscriptLine(call_id=self.call_id, t=self._t(), role="caller", text=text))

    def _answer(self, reply: Reply, text: str) -> None:
        """Make ``reply`` the utterance playing now (a new turn supersedes anything still queued)."""
        self.history.append({"role": "user", "content": text})
        previous = self.speaking
        for queued in self._queued:
            self._spawn(queued.cancel())
        self._queued.clear()
        self.speaking = reply
        if previous is not None and previous is not reply and not previous.done:
            self._spawn(previous.cancel())
        self._unheard.append(reply)
        self.supervisor.on_reply_started(self.audio_ms)
        reply.commit()
        if reply.task is not None:
            reply.task.add_done_callback(lambda _t: self._remember_reply(reply))

    def _remember_reply(self, reply: Reply) -> None:
        if not reply.cancelled and reply.text_sent:
            reply.timeline.reply = reply.text_sent
            self.history.append({"role": "assistant", "content": reply.text_sent})

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
        reply.interrupted = True
        heard = reply.heard_text(reply.heard_ms)
        self.speaking = None
        for queued in self._queued:
            self._spawn(queued.cancel())
        self._queued.clear()
        last = self.history[-1] if self.history else None
        if last is not None and last.get("role") == "assistant" and last.get("content") == reply.text_sent:
            self.history[-1] = {"role": "assistant", "content": heard}
        elif heard:
            self.history.append({"role": "assistant", "content": heard})
        flow, plan = self.flow, reply.plan
        if flow is not None and plan is not None and not reply.text_complete:
            # The reply will not finish: its turn settles now, so the side result can still land.
            self._flow_call(lambda: flow.on_reply_done(plan.turn_id))
        self._spawn(reply.cancel())

    # ----------------------------------------------------------------- supervisor
    def _supervise(self) -> None:
        """Carry out the supervisor's dead-air and voicemail actions."""
        actions = self.supervisor.actions()
        if not actions:
            return
        if self.supervisor.hold_replies:
            self._drop_speculation()
        for action in actions:
            if isinstance(action, SayCheckIn):
                self._say(action.text)
            elif isinstance(action, SayAndHangUp):
                self.outcome = action.reason
                self._say(action.text, then=self._hang_up)
            elif isinstance(action, HangUp):
                self.outcome = action.reason
                self._hang_up()
            elif isinstance(action, LeaveMessage):
                self.outcome = "voicemail_message"
                self._say(action.text, then=self._hang_up)

    # ----------------------------------------------------------------- call flow
    def _flow_try(self, fn: Callable[[], list[fl.Action]]) -> list[fl.Action]:
        try:
            return fn()
        except FlowError as exc:
            log.warning("call %s: flow: %s", self.call_id, exc)
            return []

    def _flow_call(self, fn: Callable[[], list[fl.Action]]) -> None:
        self._perform(self._flow_try(fn))

    def _turn_text_done(self, reply: Reply, text: str | None) -> None:
        """A turn's reply streamed to its end (or failed): tell the flow."""
        if reply.cancelled or reply.plan is None or self.flow is None or self.planner is None:
            return
        plan, flow, planner = reply.plan, self.flow, self.planner
        self._perform(self._flow_try(lambda: planner.finish_reply(flow, plan, text)))

    def _start_side(self, plan: TurnPlan, tl: TurnTimeline) -> None:
        assert plan.side is not None
        self.counters.side_calls += 1
        name = f"side-{self.call_id}-{plan.turn_id}"
        task = asyncio.create_task(self._run_side(plan, plan.side, tl), name=name)
        self._sides[plan.turn_id] = task

    async def _run_side(self, plan: TurnPlan, request: LLMRequest, tl: TurnTimeline) -> None:
        tl.side_requests += 1
        parts: list[str] = []
        text: str | None = None
        try:
            async for ev in self.stream(request):
                if isinstance(ev, LlmDelta):
                    parts.append(ev.text)
            text = "".join(parts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.counters.side_failures += 1
            log.warning("call %s: %s call failed: %s", self.call_id, request.purpose, exc)
        finally:
            self._sides.pop(plan.turn_id, None)
        tl.stamp("extraction_done", asyncio.get_running_loop().time())
        if self.flow is None or self.planner is None or self._closed:
            return
        flow, planner = self.flow, self.planner
        self._perform(self._flow_try(lambda: planner.finish_side(flow, plan, text)))

    def _perform(self, actions: list[fl.Action]) -> None:
        """Carry out flow actions in order (nothing here awaits: slow work goes to tasks)."""
        for action in actions:
            if self._closed:
                break
            if isinstance(action, fl.ReplaceReply):
                self._replace_reply(action.turn_id)
            elif isinstance(action, fl.Say):
                self._say(action.text, flow_done=True)
            elif isinstance(action, fl.Reply | fl.Reprompt):
                self._flow_reply(action)
            elif isinstance(action, fl.CallWebhook):
                self.counters.webhooks += 1
                self._spawn(self._webhook(action))
            elif isinstance(action, fl.HangUp):
                self.outcome = "hangup"
                self._say(action.after_say, then=self._hang_up)
            elif isinstance(action, fl.Transfer):
                self.outcome = "transfer"
                self._say(action.after_say, then=self._transfer_later(action.to))
        self._inherit = None
        self._record_flow()

    def _take_timeline(self) -> tuple[TurnTimeline, bool]:
        """The timeline of a fixed text: the replaced turn's (reported), else a private one."""
        if self._inherit is not None:
            tl, self._inherit = self._inherit, None
            return tl, True
        return TurnTimeline(self.call_id, self.turn_index), False

    def _say(self, text: str, *, flow_done: bool = False, then: Callable[[], None] | None = None) -> None:
        """Speak a fixed text after whatever is playing; ``then`` runs once the caller heard it."""
        if not text.strip():
            if then is not None:
                then()
            return
        tl, report = self._take_timeline()
        reply = Reply(self, tl, prompt_text="", speculative=False, report=report)
        if flow_done:
            reply.on_text_done = self._fixed_text_done
        if then is not None:
            fired: list[bool] = []

            def once() -> None:
                if not fired:
                    fired.append(True)
                    then()

            reply.after_played = once
        reply.start_fixed(text)
        self._utter(reply)

    def _flow_reply(self, action: fl.Reply | fl.Reprompt) -> None:
        """An LLM reply from a node entered after a webhook (the caller waits for the answer)."""
        if self.flow is None or self.planner is None:
            return
        knowledge = self._knowledge(self._last_user)
        request = self.planner.request_for(self.flow, action, self.memory, knowledge=knowledge)
        tl, report = self._take_timeline()
        reply = Reply(self, tl, prompt_text="", speculative=False, report=report)
        reply.on_text_done = self._fixed_text_done
        reply.start_llm(request)
        self._utter(reply)

    def _fixed_text_done(self, reply: Reply, text: str | None) -> None:
        flow = self.flow
        if flow is not None and not reply.cancelled:
            self._flow_call(flow.on_reply_done)

    def _replace_reply(self, turn_id: int) -> None:
        """The turn's reply is wrong for the node just entered: stop it; the next action replaces it."""
        for reply in (self.speaking, self.speculation, *self._queued):
            if reply is None or reply.plan is None or reply.plan.turn_id != turn_id or reply.cancelled:
                continue
            self.counters.replaced_replies += 1
            if reply is self.speaking and self.call is not None:
                played = self.call.clear().played_ms if reply.queued_upto else 0.0
                reply.pause(played)
                reply.interrupted = True
                self.speaking = None
            if reply is self.speculation:
                self.speculation = None
            if reply in self._queued:
                self._queued.remove(reply)
            if reply.report and not reply.finished:
                reply.report = False
                self._inherit = reply.timeline
            self._spawn(reply.cancel())
            return

    async def _webhook(self, action: fl.CallWebhook) -> None:
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
            self.counters.webhook_failures += 1
            log.warning(
                "call %s: webhook %s (%s) failed: %s", self.call_id, action.node_id, action.url, error
            )
        if self.flow is None or self._closed:
            return
        flow = self.flow
        self._flow_call(lambda: flow.on_function_result(result, error=error))

    def _transfer_later(self, to: str) -> Callable[[], None]:
        return lambda: self._spawn(self._transfer(to))

    def _hang_up(self) -> None:
        self._spawn(self._end_call())

    async def _end_call(self) -> None:
        if self.control is not None:
            with contextlib.suppress(Exception):
                await self.control.hangup(self.call_id)
        if self.call is not None:
            self.call.hangup()

    async def _transfer(self, to: str) -> None:
        done = False
        if self.control is not None:
            try:
                done = await self.control.transfer(self.call_id, to)
            except Exception as exc:
                log.warning("call %s: transfer to %s failed: %s", self.call_id, to, exc)
        if not done:
            log.info("call %s: transfer to %s requested (no Call Control client)", self.call_id, to)

    # ----------------------------------------------------------------- memory and records
    def _flush_heard(self) -> None:
        """Move what the caller heard of the finished utterances into the memory and the records."""
        keep: list[Reply] = []
        for reply in self._unheard:
            if not (reply.cancelled or reply.interrupted or reply.done or self._closed):
                keep.append(reply)  # still being written: its text is not final
                continue
            text = reply.spoken()
            if text:
                self.memory.add_agent(text)
                self._submit(TranscriptLine(call_id=self.call_id, t=self._t(), role="agent", text=text))
        self._unheard = keep

    def _record_flow(self) -> None:
        flow = self.flow
        if flow is None or self.records is None:
            return
        for node in flow.path[self._recorded_path :]:
            self._submit(NodeEntered(call_id=self.call_id, t=self._t(), node=node))
        self._recorded_path = len(flow.path)
        for name, value in flow.variables.items():
            if self._recorded_vars.get(name, ...) != value:
                self._recorded_vars[name] = value
                self._submit(VariableSet(call_id=self.call_id, name=name, value=value))
