"""The life of one agent utterance as a state machine (sans-I/O).

Theory of operation
-------------------
An utterance (a reply, a fixed text, the greeting) is **held** while it is written: its text
streams to the TTS and its audio is kept, but nothing is played (a speculative reply waits for
the end of the caller's turn; a fixed text waits behind the utterance playing). **Committed**,
it is **live**: its audio goes to the pacer as it arrives. Caller voice over it **pauses** it (the
pacer is cleared; the rest is kept); a backchannel **resumes** it, a barge-in **interrupts** it
(the caller heard part of it, and that part stays in the history). An utterance nobody will hear
(a speculation that guessed wrong, a queued text a new turn supersedes, anything at the end of the
call) is **cancelled**.

``UTTERANCE_TRANSITIONS`` is the whole table: a trigger missing from a state's row raises
:class:`~mediasrv.errors.FlowError`, so an impossible order of events shows up as an error, not
as a reply that plays after it was dropped. Facts that are not steps of this life (the TTS
finished, the text is complete, all audio was handed to the pacer once) stay with the shell's
:class:`~mediasrv.agent.reply.Reply`.

Rules: no I/O, no clock; one object per utterance.
"""

from __future__ import annotations

import enum
from typing import Final

from mediasrv.errors import FlowError


class UtteranceState(enum.Enum):
    """Where an utterance is in its life."""

    HELD = "held"
    """Being written; audio kept, nothing played."""
    LIVE = "live"
    """Committed: audio goes to the pacer as it arrives."""
    PAUSED = "paused"
    """Caller voice over it: stopped, the rest kept for a resume."""
    INTERRUPTED = "interrupted"
    """A barge-in (or a replacement) stopped it for good; the caller heard part of it."""
    CANCELLED = "cancelled"
    """Dropped before anyone heard it."""


class UtteranceTrigger(enum.Enum):
    """What can happen to an utterance."""

    COMMIT = "commit"
    PAUSE = "pause"
    RESUME = "resume"
    INTERRUPT = "interrupt"
    CANCEL = "cancel"


S, T = UtteranceState, UtteranceTrigger
UTTERANCE_TRANSITIONS: Final[dict[UtteranceState, dict[UtteranceTrigger, UtteranceState]]] = {
    S.HELD: {T.COMMIT: S.LIVE, T.CANCEL: S.CANCELLED},
    S.LIVE: {
        T.COMMIT: S.LIVE,  # made the utterance playing again (a turn answered by the reply playing)
        T.PAUSE: S.PAUSED,
        T.INTERRUPT: S.INTERRUPTED,
        T.CANCEL: S.CANCELLED,  # superseded by a new turn's reply, or the call ended
    },
    S.PAUSED: {
        T.RESUME: S.LIVE,
        T.PAUSE: S.PAUSED,  # a second overlap report while stopped
        T.INTERRUPT: S.INTERRUPTED,
        T.CANCEL: S.CANCELLED,
    },
    S.INTERRUPTED: {T.CANCEL: S.INTERRUPTED},  # its streams are closed; what was heard stays heard
    S.CANCELLED: {T.CANCEL: S.CANCELLED},
}
"""Every legal step; anything else is a :class:`~mediasrv.errors.FlowError`."""
del S, T


class UtteranceLife:
    """The state of one utterance (see module docs)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = UtteranceState.HELD

    def fire(self, trigger: UtteranceTrigger) -> UtteranceState:
        """Take one step; return the new state.

        Raises:
            FlowError: ``trigger`` is not a step from the current state.
        """
        try:
            self.state = UTTERANCE_TRANSITIONS[self.state][trigger]
        except KeyError:
            raise FlowError(f"utterance: no {trigger.value!r} from {self.state.value!r}") from None
        return self.state

    @property
    def committed(self) -> bool:
        """Released at least once (live, paused or interrupted)."""
        return self.state in (UtteranceState.LIVE, UtteranceState.PAUSED, UtteranceState.INTERRUPTED)

    @property
    def stopped(self) -> bool:
        """Nothing more of it will play (interrupted or cancelled)."""
        return self.state in (UtteranceState.INTERRUPTED, UtteranceState.CANCELLED)
