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

Every stage is stamped into the turn's :class:`~mediasrv.timing.TurnTimeline`; the summary
is logged as one JSON line per turn and handed to ``on_turn`` listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from mediasrv.agent.clauses import ClauseSplitter, normalise
from mediasrv.agent.config import AgentConfig
from mediasrv.agent.ports import (
    LlmDelta,
    LLMPort,
    SttEndpoint,
    SttFailure,
    STTPort,
    SttText,
    TtsAudio,
    TtsDone,
    TTSPort,
)
from mediasrv.call import CallHandle
from mediasrv.providers.telnyx.stream import StreamStarted
from mediasrv.timing import TurnSummary, TurnTimeline
from mediasrv.turns import (
    Backchannel,
    BargeIn,
    EndOfTurn,
    OverlapDiscarded,
    OverlapStarted,
    TurnConfig,
    TurnDetector,
    TurnState,
    UserPaused,
    UserResumed,
)
from mediasrv.turns.echo import EchoGuard, text_is_echo
from mediasrv.vad import VadResult, VoiceActivityDetector

log = logging.getLogger("mediasrv.agent")

FRAME_MS = 20
ULAW_BYTES_PER_MS = 8
ECHO_FRAME = VadResult(prob=0.0, speech=False, active=False, energy_db=0.0, noise_db=0.0)
"""What the turn detector sees for a frame the echo guard attributes to our own voice."""
SPECULATE_MIN_MS = 40
"""Silence after the caller's last voice frame before a speculative reply may start."""
RESUME_REWIND_BYTES = 1600
"""After a false interruption, resume 200 ms before the point where the agent was cut off."""


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


class Reply:
    """One agent reply: an LLM stream (or fixed text) feeding one TTS context.

    Audio is held until :meth:`commit`; after that every chunk goes to the pacer at once.
    """

    def __init__(self, runner: AgentRunner, timeline: TurnTimeline, *, prompt_text: str, speculative: bool) -> None:
        self.runner = runner
        self.timeline = timeline
        self.prompt_text = prompt_text
        self.speculative = speculative
        self.context_id = runner.tts.new_context()
        self.committed = False
        self.cancelled = False
        self.done = False
        self.text_sent = ""
        self.audio = bytearray()
        """Every byte of this reply's audio (8 kHz mu-law), so a paused reply can resume."""
        self.queued_upto = 0
        """How much of ``audio`` has been handed to the pacer."""
        self.paused = False
        self.heard_ms = 0.0
        self.first_queued = False
        self.task: asyncio.Task[None] | None = None

    def start_llm(self, messages: list[dict[str, Any]]) -> None:
        """Stream the LLM's answer into the TTS context (in a task)."""
        self.task = asyncio.create_task(self._run_llm(messages), name=f"reply-{self.context_id}")

    def start_fixed(self, text: str) -> None:
        """Speak a fixed text (greeting, check-in) through the TTS context."""
        self.task = asyncio.create_task(self._run_fixed(text), name=f"say-{self.context_id}")

    async def _run_fixed(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        self.timeline.stamp("tts_first_text", loop.time())
        self.text_sent = text
        await self.runner.tts.send_text(self.context_id, text)
        await self.runner.tts.end(self.context_id)

    async def _run_llm(self, messages: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        tl = self.timeline
        tl.stamp("llm_start", loop.time(), overwrite=True)
        splitter = ClauseSplitter()
        try:
            async for ev in self.runner.llm.stream(messages, purpose="reply"):
                if not isinstance(ev, LlmDelta) or not ev.text:
                    continue
                tl.stamp("llm_ttft", ev.at)
                for piece in splitter.push(ev.text):
                    await self._speak(piece)
            tl.stamp("llm_done", loop.time())
            rest = splitter.flush()
            if rest.strip():
                await self._speak(rest)
            await self.runner.tts.end(self.context_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.runner.counters.llm_failures += 1
            log.warning("call %s: reply failed: %s", self.runner.call_id, exc)
            if not self.text_sent:
                await self._speak("Sorry, could you say that again?")
            await self.runner.tts.end(self.context_id)

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
        self.done = True
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
        with contextlib.suppress(Exception):
            await self.runner.tts.close_context(self.context_id)

    def heard_text(self, played_ms: float) -> str:
        """The part of the reply's text the caller heard, by the share of audio played."""
        if self.audio_ms <= 0 or not self.text_sent:
            return ""
        share = min(1.0, played_ms / self.audio_ms)
        words = self.text_sent.split()
        return " ".join(words[: int(round(len(words) * share))])


class AgentRunner:
    """The agent behaviour of one call (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        stt: STTPort,
        llm: LLMPort,
        tts: TTSPort,
        on_turn: Callable[[TurnTimeline], None] | None = None,
    ) -> None:
        self.config = config
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.on_turn = on_turn
        self.call: CallHandle | None = None
        self.call_id = "-"
        self.vad = VoiceActivityDetector()
        # Speculate early: a reply that turns out wrong is cancelled for the price of its tokens,
        # while a right one hides the LLM and TTS start-up behind the end-of-turn wait.
        self.turns = TurnDetector(TurnConfig(speculate_min_ms=SPECULATE_MIN_MS))
        self.counters = CallCounters()
        self.echo = EchoGuard()
        self._out_ms = 0
        self.history: list[dict[str, Any]] = []
        self.audio_ms = 0
        self.turn_index = 0
        self.timeline: TurnTimeline | None = None
        self.speculation: Reply | None = None
        self.speaking: Reply | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._audible = False
        self.summaries: list[TurnSummary] = []

    # ----------------------------------------------------------------- Behaviour
    async def start(self, call: CallHandle, started: StreamStarted) -> None:
        """Open the providers; speak the greeting if the agent speaks first."""
        self.call = call
        self.call_id = started.call_control_id or call.call_id
        call.add_frame_listener(self._on_frame_out)
        await asyncio.gather(self.stt.open(started.call_control_id or self.call_id), self.tts.open())
        self._tasks.append(asyncio.create_task(self._stt_loop(), name=f"stt-{self.call_id}"))
        self._tasks.append(asyncio.create_task(self._tts_loop(), name=f"tts-{self.call_id}"))
        if self.config.first_speaker == "agent" and self.config.greeting:
            tl = TurnTimeline(self.call_id, 0)
            tl.text = ""
            tl.reply = self.config.greeting
            tl.stamp("eot", asyncio.get_running_loop().time())
            reply = Reply(self, tl, prompt_text="", speculative=False)
            reply.start_fixed(self.config.greeting)
            reply.commit()
            self.speaking = reply
            self.history.append({"role": "assistant", "content": self.config.greeting})

    def on_audio(self, ulaw: bytes, now: float) -> None:
        """Per 20 ms frame: STT passthrough, VAD, turn detection."""
        self.stt.send_audio(ulaw)
        self.audio_ms += FRAME_MS
        audible = self._agent_audible()
        if audible is not self._audible:
            self._audible = audible
            self.turns.set_agent_speaking(audible, self.audio_ms)
        vad = self.vad.process_ulaw(ulaw)
        if audible and vad.speech and self.echo.assess_inbound(ulaw, self.audio_ms).echo_likely:
            # Our own voice coming back (speakerphone): never let it open an overlap.
            self.counters.echo_frames += 1
            vad = ECHO_FRAME
        self.turns.on_vad(vad, self.audio_ms)
        self._handle_turn_events(now)

    def on_mark(self, name: str, now: float) -> None:
        """Marks are tracked by the pacer; nothing more to do here."""

    def on_dtmf(self, digit: str, now: float) -> None:
        """DTMF is logged; call flows can act on it later."""
        log.info("call %s: dtmf %s", self.call_id, digit)

    async def close(self) -> None:
        """Cancel replies and close the providers."""
        self._closed = True
        for reply in (self.speculation, self.speaking):
            if reply is not None:
                await reply.cancel()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await asyncio.gather(self.stt.close(), self.tts.close(), return_exceptions=True)

    # ----------------------------------------------------------------- helpers
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
            tl = reply.timeline
            self.call.notify_next_frame(lambda t: tl.stamp("first_frame", t))
        self.call.play(ulaw)

    def finish_utterance(self, reply: Reply) -> None:
        """A committed reply has all its audio queued: pad, mark, and report the turn."""
        if self.call is None:
            return
        self.call.end_utterance()
        self.call.mark(f"reply-{reply.timeline.turn}")
        self._report(reply.timeline)

    def _report(self, tl: TurnTimeline) -> None:
        self.summaries.append(tl.summary())
        if self.on_turn is not None:
            self.on_turn(tl)

    # ----------------------------------------------------------------- STT / TTS loops
    async def _stt_loop(self) -> None:
        async for ev in self.stt.events():
            if isinstance(ev, SttText) and self._audible and self._is_text_echo(ev):
                self.counters.echo_transcripts += 1
                continue
            if isinstance(ev, SttText):
                log.debug("call %s: stt @%d ms final+=%r nonfinal=%r end=%s", self.call_id, self.audio_ms,
                          ev.final_delta, ev.nonfinal, ev.audio_end_ms)
                self.turns.on_tokens(ev.final_delta, ev.nonfinal, self.audio_ms, audio_end_ms=ev.audio_end_ms)
                log.debug("call %s: turn text now %r", self.call_id, self.turns.turn_text)
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
        for r in (self.speaking, self.speculation):
            if r is not None and r.context_id == context_id:
                return r
        return None

    # ----------------------------------------------------------------- turn events
    def _handle_turn_events(self, now: float) -> None:
        for ev in self.turns.events_received():
            log.debug("call %s: turn event %s", self.call_id, ev)
            if isinstance(ev, UserPaused):
                self._on_paused(ev, now)
            elif isinstance(ev, UserResumed):
                self._spawn(self._drop_speculation(counted=True))
            elif isinstance(ev, EndOfTurn):
                self._on_end_of_turn(ev, now)
            elif isinstance(ev, OverlapStarted):
                self._on_overlap_started(now)
            elif isinstance(ev, BargeIn):
                self._on_barge_in(now)
            elif isinstance(ev, (Backchannel, OverlapDiscarded)):
                self._on_false_interruption()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    def _new_timeline(self, now: float) -> TurnTimeline:
        if self.timeline is None:
            self.turn_index += 1
            self.timeline = TurnTimeline(self.call_id, self.turn_index)
        return self.timeline

    def _messages(self, user_text: str) -> list[dict[str, Any]]:
        window = self.history[-2 * self.config.history_turns :]
        return [{"role": "system", "content": self.config.system_prompt}, *window, {"role": "user", "content": user_text}]

    def _on_paused(self, ev: UserPaused, now: float) -> None:
        tl = self._new_timeline(now)
        tl.stamp("user_paused", now)
        self.stt.finalize()
        text = getattr(ev, "text", "") or ""
        if not self.config.speculative or not text.strip():
            return
        if self.speculation is not None:
            self._spawn(self._drop_speculation(counted=True))
        reply = Reply(self, tl, prompt_text=text, speculative=True)
        reply.start_llm(self._messages(text))
        self.speculation = reply

    def _is_text_echo(self, ev: SttText) -> bool:
        """The platform's text filter: words the STT hears while we talk that are our own."""
        heard = (ev.final_delta + ev.nonfinal).strip()
        recent = [m["content"] for m in self.history[-4:] if m.get("role") == "assistant"]
        if self.speaking is not None and self.speaking.text_sent:
            recent.append(self.speaking.text_sent)
        return bool(heard) and text_is_echo(heard, recent)

    def _refresh_speculation(self) -> None:
        """Words arrived during the pause: restart the speculative reply on the fresher text."""
        spec = self.speculation
        if spec is None or self.turns.state is not TurnState.USER_PAUSED or self.timeline is None:
            return
        text = self.turns.turn_text
        if not text.strip() or normalise(text) == normalise(spec.prompt_text):
            return
        self.counters.speculative_cancelled += 1
        self._spawn(spec.cancel())
        reply = Reply(self, self.timeline, prompt_text=text, speculative=True)
        reply.start_llm(self._messages(text))
        self.speculation = reply

    async def _drop_speculation(self, *, counted: bool) -> None:
        spec, self.speculation = self.speculation, None
        if spec is not None:
            if counted:
                self.counters.speculative_cancelled += 1
            await spec.cancel()

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
        if spec is not None and normalise(spec.prompt_text) == normalise(text):
            self.counters.speculative_hits += 1
            tl.speculative = "hit"
            reply = spec
        else:
            if spec is not None:
                self.counters.speculative_misses += 1
                tl.speculative = "miss"
                self._spawn(spec.cancel())
            if not text.strip():
                return
            reply = Reply(self, tl, prompt_text=text, speculative=False)
            reply.start_llm(self._messages(text))
        self.history.append({"role": "user", "content": text})
        previous = self.speaking
        self.speaking = reply
        if previous is not None and previous is not reply and not previous.done:
            self._spawn(previous.cancel())
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
        heard = reply.heard_text(reply.heard_ms)
        self.speaking = None
        last = self.history[-1] if self.history else None
        if last is not None and last.get("role") == "assistant" and last.get("content") == reply.text_sent:
            self.history[-1] = {"role": "assistant", "content": heard}
        elif heard:
            self.history.append({"role": "assistant", "content": heard})
        self._spawn(reply.cancel())
