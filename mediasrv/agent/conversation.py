"""The agent's reply decisions as a sans-I/O core: speculate, keep, drop, answer.

Theory of operation
-------------------
:class:`ReplyPolicy` decides, for one call, what happens to the agent's reply at each turn event
and each new transcript; it returns commands as data and does nothing itself. The call shell
(:class:`~mediasrv.agent.turn_replies.TurnReplies`) carries them out: it starts and cancels
replies, asks the STT to finalize, plays what is committed. The inputs are plain values (the
words, the words the running speculation answers, what the turn detector says of them, whether
the agent may speak at all), so every rule is tested as a table, with no loop and no socket
(``tests/core/test_conversation.py``).

Rules:

1. **Finalize** when the detector asks (``UserPaused.finalize``), at most once every
   ``FINALIZE_MIN_GAP_MS`` of audio (Soniox: not more than every few seconds).
2. **Speculate at a pause** on words that already hold the last speech (a reply to stale
   words would surely be dropped); a speculation on the same words (after normalising) is
   kept, any other is dropped first.
3. **Fresher words** during a pause drop the speculation; the new words get one when the
   silence reaches their own pause point ("... the bill I" waits longer than "... last
   week."). While the caller still seems to talk, words that read as a finished sentence
   (COMPLETE) start one; words that make it unfinished again drop it.
4. **Resumed speech** drops the speculation.
5. **End of turn**: nothing for a wordless turn with no speculation; while replies are held
   (a machine answered) or a provider failed the call, the speculation is dropped and nothing
   is said; a speculation on the final words is played (a hit); any other is dropped (a miss)
   and the final words are answered afresh.
6. The agent speaks only if speculation is on for the agent and its words are not empty.

Rules of the module: no I/O, no clock, no asyncio; one object per call.
"""

from __future__ import annotations

from typing import Final

import msgspec

from mediasrv.agent.clauses import normalise
from mediasrv.providers.soniox.messages import FINALIZE_MIN_GAP_MS
from mediasrv.turns import Completeness, TurnState, assess_completeness


class Finalize(msgspec.Struct, frozen=True):
    """Ask the STT to finalize what it heard (its ``<fin>`` makes the words current)."""


class Speculate(msgspec.Struct, frozen=True):
    """Start a speculative reply on ``text``, the caller's words so far (audio held until the
    end of turn)."""

    text: str


class DropSpeculation(msgspec.Struct, frozen=True):
    """Cancel the speculative reply.

    Attributes:
        miss: it was dropped at the end of turn because the final words differ (counted as a
            miss, not as a plain cancel).
    """

    miss: bool = False


class PlaySpeculation(msgspec.Struct, frozen=True):
    """The speculation answered the final words: commit it and play it (a hit)."""


class Answer(msgspec.Struct, frozen=True):
    """Start the turn's reply on the final ``text`` and play it as it comes."""

    text: str


Command = Finalize | Speculate | DropSpeculation | PlaySpeculation | Answer
NOTHING: Final[list[Command]] = []


class ReplyPolicy:
    """The reply decisions of one call (see module docs).

    Args:
        speculative: the agent speculates at all (``AgentConfig.speculative``).
    """

    def __init__(self, *, speculative: bool = True) -> None:
        self.speculative = speculative
        self._last_finalize_ms = -FINALIZE_MIN_GAP_MS

    def _may_speculate(self, text: str, may_speak: bool) -> bool:
        return self.speculative and may_speak and bool(text.strip())

    @staticmethod
    def _same(text: str, speculating_on: str | None) -> bool:
        return speculating_on is not None and normalise(text) == normalise(speculating_on)

    def paused(
        self,
        *,
        text: str,
        finalize: bool,
        audio_ms: int,
        speculating_on: str | None,
        may_speak: bool,
        text_is_current: bool,
    ) -> list[Command]:
        """A tentative end of turn (``UserPaused``).

        Args:
            text: the words so far.
            finalize: the detector asks for the STT's finalize.
            audio_ms: the call's audio time (the finalize budget runs on it).
            speculating_on: the words the running speculation answers (None: none runs).
            may_speak: replies are not held and no provider failed the call.
            text_is_current: the words hold the last speech the VAD heard.
        """
        out: list[Command] = []
        if finalize and audio_ms - self._last_finalize_ms >= FINALIZE_MIN_GAP_MS:
            self._last_finalize_ms = audio_ms
            out.append(Finalize())
        if self._same(text, speculating_on):
            return out  # already speculating on these words
        if speculating_on is not None:
            out.append(DropSpeculation())
        if self._may_speculate(text, may_speak) and text_is_current:
            out.append(Speculate(text))
        # stale words: the speculation starts when the STT catches up (words())
        return out

    def words(
        self,
        *,
        state: TurnState,
        text: str,
        speculating_on: str | None,
        may_speak: bool,
        text_is_current: bool,
        speculation_due: bool,
        turn_open: bool,
    ) -> list[Command]:
        """New words from the STT (final or not): keep the speculation on the freshest words.

        Args:
            state: the turn detector's state.
            text: the words of the open turn.
            speculating_on: the words the running speculation answers (None: none runs).
            may_speak: replies are not held and no provider failed the call.
            text_is_current: the words hold the last speech the VAD heard.
            speculation_due: the silence has reached these words' pause point.
            turn_open: a pause already opened the turn's timeline.
        """
        if state is TurnState.USER_PAUSED:
            if self._same(text, speculating_on):
                return NOTHING
            out: list[Command] = [DropSpeculation()] if speculating_on is not None else []
            if turn_open and self._may_speculate(text, may_speak) and text_is_current and speculation_due:
                out.append(Speculate(text))
            # else less finished words wait for their own pause point (UserPaused again)
            return out
        if state not in (TurnState.USER_SPEAKING, TurnState.USER_PAUSING):
            return NOTHING
        if self._same(text, speculating_on):
            return NOTHING
        out = [DropSpeculation()] if speculating_on is not None else []
        finished = bool(text.strip()) and assess_completeness(text).verdict is Completeness.COMPLETE
        if finished and self._may_speculate(text, may_speak):
            out.append(Speculate(text))
        return out

    @staticmethod
    def resumed(speculating_on: str | None) -> list[Command]:
        """The caller spoke again after a pause: the speculation is out of date."""
        return [DropSpeculation()] if speculating_on is not None else NOTHING

    def end_of_turn(
        self, *, text: str, speculating_on: str | None, hold: bool, failed: bool
    ) -> list[Command]:
        """The caller's turn is over.

        Args:
            text: the turn's final words.
            speculating_on: the words the running speculation answers (None: none runs).
            hold: replies are held (an answering machine; the supervisor speaks later).
            failed: a provider refused the call (its fallback line is the last word).
        """
        if hold or failed:
            return [DropSpeculation()] if speculating_on is not None else NOTHING
        if self._same(text, speculating_on):
            return [PlaySpeculation()]
        out: list[Command] = [DropSpeculation(miss=True)] if speculating_on is not None else []
        if text.strip():
            out.append(Answer(text))
        return out
