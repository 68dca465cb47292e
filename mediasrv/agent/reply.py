"""One agent utterance: an LLM stream (or a fixed text, or cached audio) feeding one TTS context.

A :class:`Reply` belongs to the call's :class:`~mediasrv.agent.runner.AgentRunner`. It streams the
LLM's text (cut into clauses; in the ``merged`` strategy only the JSON ``say`` field) or a fixed
text into its own TTS context and keeps every byte of audio that comes back. The audio is held
until :meth:`Reply.commit` (a speculative reply is never heard before the end of turn); after
that each chunk goes to the runner's pacer at once. An overlap pauses the reply a little before
the point the caller heard; a false interruption resumes it from there. The runner decides when
each of these happens; the reply only keeps its own state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mediasrv.agent.clauses import ClauseSplitter
from mediasrv.agent.planner import LLMRequest, TurnPlan
from mediasrv.agent.ports import LlmDelta, TtsAudio
from mediasrv.agent.utterance import UtteranceLife, UtteranceState, UtteranceTrigger
from mediasrv.errors import ProviderRejected
from mediasrv.providers.llm.say import SayExtractor
from mediasrv.timing import TurnTimeline

if TYPE_CHECKING:
    from mediasrv.agent.runner import AgentRunner

log = logging.getLogger("mediasrv.agent")

ULAW_BYTES_PER_MS = 8
RESUME_REWIND_BYTES = 1600
"""After a false interruption, resume 200 ms before the point where the agent was cut off."""
SORRY = "Sorry, could you say that again?"


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
        self.life = UtteranceLife()
        """Held, live, paused, interrupted or cancelled (:mod:`mediasrv.agent.utterance`)."""
        self._closed = False  # the LLM stream and the TTS context were stopped
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
        for stale in ("llm_ttft", "llm_done", "tts_first_text", "tts_ttfb", "tts_done"):
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
            refused = isinstance(exc, ProviderRejected) and not exc.retryable and _is_4xx(exc.status)
            if refused:
                # A bad key, model or request: every reply would fail alike. The runner's
                # fallback line (then hang-up) follows this reply; no "say that again".
                self.runner.failures.report_exception(exc)
            else:
                log.warning("call %s: reply failed: %s", self.runner.call_id, exc)
            with contextlib.suppress(Exception):
                if not self.text_sent and not refused:
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

    @property
    def committed(self) -> bool:
        """Released to the caller at least once."""
        return self.life.committed

    @property
    def paused(self) -> bool:
        """Stopped by caller voice over it, the rest kept for :meth:`resume`."""
        return self.life.state is UtteranceState.PAUSED

    @property
    def interrupted(self) -> bool:
        """Stopped for good by a barge-in or a replacement; the caller heard part of it."""
        return self.life.state is UtteranceState.INTERRUPTED

    @property
    def stopped(self) -> bool:
        """Nothing more of it will play (interrupted or cancelled)."""
        return self.life.stopped

    def on_audio(self, chunk: TtsAudio) -> None:
        """A TTS chunk for this reply arrived: keep it, and play it if the reply is live."""
        if self.stopped:
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
        if not self.stopped:
            self.timeline.stamp("tts_done", asyncio.get_running_loop().time())
        if self.on_complete_audio is not None and not self.stopped:
            self.on_complete_audio(bytes(self.audio))
        if self.life.state is UtteranceState.LIVE:
            self.runner.finish_utterance(self)

    def commit(self) -> None:
        """Release held audio and play the rest as it comes."""
        self.life.fire(UtteranceTrigger.COMMIT)
        self._play_rest()
        if self.done:
            self.runner.finish_utterance(self)

    def pause(self, played_ms: float) -> None:
        """The caller started talking over us: stop here, keep the rest for :meth:`resume`."""
        self.life.fire(UtteranceTrigger.PAUSE)
        # Resume a little before the cut, on a frame boundary, so the listener re-catches the word.
        played = int(played_ms) * ULAW_BYTES_PER_MS
        self.queued_upto = max(0, (played - RESUME_REWIND_BYTES) // 160 * 160)
        self.heard_ms = max(self.heard_ms, played_ms)

    def resume(self) -> None:
        """A false interruption: play on from where we paused."""
        if not self.paused:
            return
        self.life.fire(UtteranceTrigger.RESUME)
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

    def interrupt(self) -> None:
        """Stopped for good after part of it was heard (a barge-in, a replacement)."""
        self.life.fire(UtteranceTrigger.INTERRUPT)

    async def cancel(self) -> None:
        """Stop the LLM stream and the TTS context; drop held audio (an interrupted reply keeps
        what was heard)."""
        if self._closed:
            return
        self._closed = True
        self.life.fire(UtteranceTrigger.CANCEL)
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
        return "" if self.life.state is UtteranceState.CANCELLED else self.text_sent.strip()


def _is_4xx(status: int | None) -> bool:
    """An HTTP refusal of the request itself (bad key, model, parameter), not a fault mid-stream."""
    return status is not None and 400 <= status < 500
