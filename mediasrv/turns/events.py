"""Events the :class:`~mediasrv.turns.detector.TurnDetector` emits (frozen msgspec Structs).

Every event carries ``t_ms``: the audio time (ms since the start of the caller's stream) at
which the detector decided it. Consumers dispatch on the class (``match event:``) or on the
``type`` tag when the events are serialised.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from mediasrv.turns.completeness import Completeness

EndReason = Literal["silence", "endpoint", "no_text", "agent", "wordless_voice"]


class TurnEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of all turn events (do not instantiate)."""

    t_ms: int


class UserStarted(TurnEvent, frozen=True, kw_only=True, tag="user_started"):
    """The caller started a turn while the agent was silent (VAD onset, or words with no VAD)."""


class UserPaused(TurnEvent, frozen=True, kw_only=True, tag="user_paused"):
    """Tentative end of turn: start a speculative reply (and send Soniox ``finalize`` if asked).

    Attributes:
        text: the words so far (final + non-final).
        verdict: how complete they look.
        silence_ms: silence heard so far.
        finalize: send ``finalize`` now. Soniox allows one every few seconds, so it is asked for
            once per pause and only once the silence reaches ``TurnConfig.finalize_min_ms``: a
            speculation may start 40 ms into a gap between words, a finalize spent there is
            missing at the real end of the turn. A second ``UserPaused`` with the same words
            asks for it when an early one did not.
    """

    text: str
    verdict: Completeness
    silence_ms: int
    finalize: bool = True


class UserResumed(TurnEvent, frozen=True, kw_only=True, tag="user_resumed"):
    """The caller spoke again after :class:`UserPaused`: cancel the speculation."""


class EndOfTurn(TurnEvent, frozen=True, kw_only=True, tag="end_of_turn"):
    """The caller's turn is over: commit and reply.

    Attributes:
        text: the words of the turn (final + non-final at the decision).
        reason: ``silence`` (hold elapsed), ``endpoint`` (Soniox ``<end>``), ``no_text``
            (long speech the STT never transcribed), ``agent`` (the agent took the floor),
            ``wordless_voice`` (finished words, then "voice" the STT found no word in).
        verdict: completeness of ``text`` at the decision.
        silence_ms: silence between the last speech and the decision.
    """

    text: str
    reason: EndReason
    verdict: Completeness
    silence_ms: int


class FalseStart(TurnEvent, frozen=True, kw_only=True, tag="false_start"):
    """A :class:`UserStarted` turn turned out to be noise (no words, too short): drop it.

    Attributes:
        voiced_ms: how much speech-like sound the VAD heard.
    """

    voiced_ms: int


class BargeIn(TurnEvent, frozen=True, kw_only=True, tag="barge_in"):
    """The caller interrupts the agent: stop playback now. Opens a user turn (no UserStarted).

    Attributes:
        text: words heard so far in the overlap (may be empty when decided on duration).
    """

    text: str


class Backchannel(TurnEvent, frozen=True, kw_only=True, tag="backchannel"):
    """The caller acknowledged ("uh huh", "okay") while the agent talks: keep talking.

    Attributes:
        text: the acknowledgement.
    """

    text: str


class OverlapStarted(TurnEvent, frozen=True, kw_only=True, tag="overlap_started"):
    """Caller voice (not judged yet) while the agent talks: pause the agent's audio now.

    Followed by :class:`BargeIn` (drop the reply), :class:`Backchannel` or
    :class:`OverlapDiscarded` (a false interruption: resume the reply where it paused).
    """


class OverlapDiscarded(TurnEvent, frozen=True, kw_only=True, tag="overlap_discarded"):
    """The overlap was wordless noise (a cough, a bump): not an interruption."""


AnyTurnEvent = (
    UserStarted
    | UserPaused
    | UserResumed
    | EndOfTurn
    | FalseStart
    | BargeIn
    | Backchannel
    | OverlapStarted
    | OverlapDiscarded
)
