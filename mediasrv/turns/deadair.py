"""DeadAirMonitor: check in when the line goes quiet, hang up politely when nobody answers.

Theory of operation
-------------------
A sans-I/O timer core. Time is an input (``t`` in seconds: audio time or the shell's monotonic
``now``; one clock per monitor), nothing is read from a clock.

Rules:

1. The line is *quiet* when neither side speaks. Every sign of speech restarts the quiet timer:
   :meth:`DeadAirMonitor.on_activity` with ``source="caller"`` (VAD voice, words) or
   ``source="agent"`` (playback). While the monitor is *busy* (:meth:`~DeadAirMonitor.set_busy`:
   the agent is talking, a caller turn is open, a reply is being generated) the timer does not
   run at all; it restarts from the moment the monitor stops being busy.
2. After ``after_s`` of quiet, :meth:`~DeadAirMonitor.poll` returns ``CheckIn(n)`` (n = 1, 2, ...)
   and the timer restarts. The check-in line the agent then speaks is agent activity: it restarts
   the timer but does **not** count as an answer.
3. Only caller activity answers: it sets the count of unanswered check-ins back to 0.
4. After ``max_check_ins`` unanswered check-ins, the next ``after_s`` of quiet gives
   ``HangUp(reason="dead_air")``; the monitor is then finished and returns nothing more.
5. The timer starts at the first input (``on_activity``, ``set_busy`` or ``poll``).

The shell arms its one timer at :meth:`~DeadAirMonitor.next_deadline` and calls ``poll`` there.
"""

from __future__ import annotations

from typing import Literal

import msgspec

ActivitySource = Literal["caller", "agent"]


class CheckIn(msgspec.Struct, frozen=True, kw_only=True, tag="check_in"):
    """Say the check-in line ("Are you still there?").

    Attributes:
        n: 1 for the first unanswered check-in, 2 for the second, ...
        at_s: time of the decision.
    """

    n: int
    at_s: float


class HangUp(msgspec.Struct, frozen=True, kw_only=True, tag="hang_up"):
    """Say goodbye and end the call.

    Attributes:
        reason: why (``"dead_air"``).
        at_s: time of the decision.
    """

    reason: Literal["dead_air"] = "dead_air"
    at_s: float


DeadAirAction = CheckIn | HangUp


class DeadAirMonitor:
    """Quiet-line timer with check-ins and a final hang-up (see module docs)."""

    def __init__(self, after_s: float = 10.0, max_check_ins: int = 2) -> None:
        """Create a monitor; its timer starts at the first input.

        Args:
            after_s: quiet needed before each check-in (and before the hang-up).
            max_check_ins: unanswered check-ins before the hang-up (0: hang up at once).
        """
        self.after_s = after_s
        self.max_check_ins = max_check_ins
        self._since: float | None = None  # start of the current quiet stretch
        self._busy = False
        self._unanswered = 0
        self._done = False

    @property
    def unanswered(self) -> int:
        """Check-ins sent since the caller last spoke."""
        return self._unanswered

    @property
    def finished(self) -> bool:
        """``HangUp`` was returned; the monitor does nothing more."""
        return self._done

    def on_activity(self, t: float, source: ActivitySource = "caller") -> None:
        """Someone spoke at ``t``: restart the quiet timer.

        Args:
            t: time of the activity.
            source: ``"caller"`` also answers the pending check-ins; ``"agent"`` does not.
        """
        self._since = t if self._since is None else max(self._since, t)
        if source == "caller":
            self._unanswered = 0

    def set_busy(self, busy: bool, t: float) -> None:
        """Pause the timer while the conversation is clearly going on (agent talking, turn open).

        Args:
            busy: True to pause, False to restart the timer from ``t``.
            t: time of the change.
        """
        self._busy = busy
        self.on_activity(t, "agent")

    def poll(self, t: float) -> list[DeadAirAction]:
        """Advance to ``t`` and return what to do now (usually nothing).

        Args:
            t: current time (call it at :meth:`next_deadline`, or on every frame).

        Returns:
            ``[CheckIn(n)]``, ``[HangUp()]`` or ``[]``.
        """
        if self._since is None:
            self._since = t
        if self._done or self._busy or t - self._since < self.after_s:
            return []
        self._since = t
        if self._unanswered >= self.max_check_ins:
            self._done = True
            return [HangUp(at_s=t)]
        self._unanswered += 1
        return [CheckIn(n=self._unanswered, at_s=t)]

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may next act, or None (busy, finished or not started)."""
        if self._done or self._busy or self._since is None:
            return None
        return self._since + self.after_s
