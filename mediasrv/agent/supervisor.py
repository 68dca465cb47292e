"""CallSupervisor: dead air and voicemail handling for one call, as a sans-I/O core.

Theory of operation
-------------------
The supervisor wraps the two turn-level cores, :class:`~mediasrv.turns.deadair.DeadAirMonitor`
and :class:`~mediasrv.turns.voicemail.VoicemailDetector`, and turns what they find into call-level
*actions* for the runner, following the agent's ``dead_air`` and ``voicemail`` config. It reads no
clock and awaits nothing: the runner feeds it events and drains :meth:`CallSupervisor.actions`.

**Time.** Every input carries ``t_ms``: integer milliseconds of *inbound caller audio* since the
media stream started (for a frame: the end of that frame, i.e. ``20 * frames_received``; for any
other event: the ``t_ms`` of the latest inbound frame when it happened). One clock for everything;
inbound frames are what moves it forward (timers are only checked in :meth:`~CallSupervisor.on_frame`).

Dead-air rules:

1. The line is quiet while neither side speaks. Caller activity (a VAD-active frame, a final
   transcript, a committed turn) and agent activity (playback starting or stopping) restart the
   quiet timer. While the agent is speaking, or a reply is owed (a turn was committed or a reply
   started and its playback has not finished), the timer does not run at all.
2. After ``dead_air.after_s`` of quiet: :class:`SayCheckIn` (n = 1, 2, ...). The check-in the agent
   then speaks is agent activity: it pauses and restarts the timer but does not answer it.
3. Caller activity answers: the count of unanswered check-ins goes back to 0.
4. After ``dead_air.max_check_ins`` unanswered check-ins, the next quiet stretch gives
   :class:`SayAndHangUp` with the ``goodbye`` line and reason ``"dead_air"``.
5. A reply that is owed but never starts playing (lost, failed) stops pausing the timer
   ``after_s`` after it was owed, so a broken reply cannot switch dead-air handling off.

Voicemail rules (only with ``voicemail.detect``; the detector's own rules decide the verdict):

6. Only inside ``voicemail.window_s`` of the answer, and the first verdict wins
   (:attr:`CallSupervisor.verdict`: ``None``, ``"human"`` or ``"voicemail"``).
7. ``action="hangup"`` (or ``leave_message`` with an empty message): on a voicemail verdict,
   :class:`HangUp` with reason ``"voicemail"`` at once.
8. ``action="leave_message"``: from the verdict on, :attr:`~CallSupervisor.hold_replies` is True
   (the agent must not answer the greeting) and dead-air check-ins stop. :class:`LeaveMessage`
   comes when the beep ends; if the verdict came from phrases or a monologue and no beep is heard,
   it comes once ``no_beep_wait_ms`` have passed since the verdict *and* the greeting has stopped
   (no caller voice for ``greeting_end_ms``, no tone in progress); in any case no later than
   ``message_max_wait_ms`` after the verdict.

Every :class:`SayAndHangUp`, :class:`HangUp` and :class:`LeaveMessage` is final: the supervisor is
then :attr:`~CallSupervisor.finished`, ignores all inputs and produces nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from mediasrv.agent.config import AgentConfig
from mediasrv.turns.deadair import CheckIn, DeadAirMonitor
from mediasrv.turns.deadair import HangUp as DeadAirHangUp
from mediasrv.turns.voicemail import (
    Beep,
    Human,
    Voicemail,
    VoicemailDetector,
    VoicemailDetectorConfig,
)

HangUpReason = Literal["dead_air", "voicemail"]
Verdict = Literal["human", "voicemail"]
_MS_PER_S: Final = 1000.0


class SayCheckIn(msgspec.Struct, frozen=True, kw_only=True, tag="say_check_in"):
    """Speak the check-in line as an agent utterance; the call goes on.

    Attributes:
        text: the line (``dead_air.check_in``).
        n: 1 for the first unanswered check-in, 2 for the second, ...
        at_ms: audio time of the decision.
    """

    text: str
    n: int
    at_ms: int


class SayAndHangUp(msgspec.Struct, frozen=True, kw_only=True, tag="say_and_hang_up"):
    """Speak ``text``, then end the call once it has played out.

    Attributes:
        text: the goodbye line.
        reason: why the call ends.
        at_ms: audio time of the decision.
    """

    text: str
    reason: HangUpReason
    at_ms: int


class HangUp(msgspec.Struct, frozen=True, kw_only=True, tag="hang_up"):
    """End the call now, saying nothing.

    Attributes:
        reason: why the call ends.
        at_ms: audio time of the decision.
    """

    reason: HangUpReason
    at_ms: int


class LeaveMessage(msgspec.Struct, frozen=True, kw_only=True, tag="leave_message"):
    """The voicemail is recording: speak ``text`` (no barge-in), then end the call.

    Attributes:
        text: the message (``voicemail.message``).
        at_ms: audio time of the decision (the end of the beep, or the end of the greeting).
    """

    text: str
    at_ms: int


Action = SayCheckIn | SayAndHangUp | HangUp | LeaveMessage


@dataclass(frozen=True, slots=True)
class SupervisorTuning:
    """Timing of the leave-a-message fallback, and the detector's tuning.

    Attributes:
        no_beep_wait_ms: after a phrase or monologue verdict, wait at least this long for a beep.
        greeting_end_ms: caller silence that means the machine's greeting has stopped.
        message_max_wait_ms: leave the message at the latest this long after the verdict.
        detector: tuning of the voicemail detector (None: its defaults).
    """

    no_beep_wait_ms: int = 3000
    greeting_end_ms: int = 2000
    message_max_wait_ms: int = 20000
    detector: VoicemailDetectorConfig | None = None


class CallSupervisor:
    """Dead-air check-ins and voicemail handling for one call (see module docs)."""

    def __init__(self, config: AgentConfig, tuning: SupervisorTuning | None = None) -> None:
        """Create the supervisor for a call answered at ``t_ms = 0``.

        Args:
            config: the agent; its ``dead_air`` and ``voicemail`` sections are used.
            tuning: leave-a-message timing and detector tuning; defaults to :class:`SupervisorTuning`.
        """
        self._dead_cfg = config.dead_air
        self._vm_cfg = config.voicemail
        self._tuning = tuning or SupervisorTuning()
        self._after_ms = config.dead_air.after_s * _MS_PER_S
        # The monitor runs in milliseconds: integer ms are exact floats, seconds would not be.
        self._dead = DeadAirMonitor(after_s=self._after_ms, max_check_ins=config.dead_air.max_check_ins)
        self._vm: VoicemailDetector | None = None
        if config.voicemail.detect:
            self._vm = VoicemailDetector(window_s=config.voicemail.window_s, config=self._tuning.detector)
        self._actions: list[Action] = []
        self._finished = False
        self._agent_speaking = False
        self._reply_owed_ms: int | None = None
        self._busy = False
        self._last_voice_ms: int | None = None
        self._voicemail_ms: int | None = None  # when the voicemail verdict reached us

    # ----------------------------------------------------------------- outputs

    def actions(self) -> list[Action]:
        """Return and clear the actions decided since the last call, in order."""
        out, self._actions = self._actions, []
        return out

    @property
    def verdict(self) -> Verdict | None:
        """``"human"``, ``"voicemail"`` or None (undecided, past the window, or detection off)."""
        verdict = self._vm.verdict if self._vm is not None else None
        if isinstance(verdict, Voicemail):
            return "voicemail"
        if isinstance(verdict, Human):
            return "human"
        return None

    @property
    def hold_replies(self) -> bool:
        """A machine answered: do not start or play replies (cancel the one in progress)."""
        return self._voicemail_ms is not None

    @property
    def finished(self) -> bool:
        """A final action was produced; inputs are ignored from now on."""
        return self._finished

    # ------------------------------------------------------------------ inputs

    def on_frame(self, ulaw: bytes, vad_active: bool, t_ms: int) -> None:
        """Take one 20 ms inbound frame; this also runs the timers.

        Args:
            ulaw: the frame, 160 bytes of mu-law.
            vad_active: the VAD's decision for it (after hysteresis and any echo gate).
            t_ms: audio time at the end of the frame.

        Raises:
            CodecError: the frame is not 160 bytes (with voicemail detection on).
        """
        if self._finished:
            return
        if self._vm is not None:
            t_s = t_ms / _MS_PER_S
            self._vm.on_audio(ulaw, t_s)
            self._vm.on_vad(vad_active, t_s)
        if vad_active:
            self._last_voice_ms = t_ms
            self._dead.on_activity(float(t_ms), "caller")
        self._handle_voicemail(t_ms)
        if self._finished:
            return
        if self._voicemail_ms is not None:
            self._maybe_leave_message(t_ms)
            return  # holding for the message: no check-ins
        self._expire_owed_reply(t_ms)
        self._poll_dead_air(t_ms)

    def on_caller_text(self, final_text: str, t_ms: int) -> None:
        """Take newly final caller words (voicemail phrases; caller activity).

        Args:
            final_text: the final transcript piece (markers removed).
            t_ms: audio time it was received.
        """
        if self._finished or not final_text.strip():
            return
        self._dead.on_activity(float(t_ms), "caller")
        if self._vm is not None:
            self._vm.on_text(final_text, t_ms / _MS_PER_S)
            self._handle_voicemail(t_ms)

    def on_agent_speaking(self, speaking: bool, t_ms: int) -> None:
        """The agent's playback started (True) or finished / was cut (False).

        Args:
            speaking: whether agent audio is going out now.
            t_ms: audio time of the change.
        """
        if self._finished:
            return
        if self._vm is not None:
            self._vm.set_agent_speaking(speaking, t_ms / _MS_PER_S)
        self._agent_speaking = speaking
        if not speaking:
            self._reply_owed_ms = None  # whatever was owed has been played
        self._dead.on_activity(float(t_ms), "agent")
        self._update_busy(t_ms)

    def on_turn_committed(self, t_ms: int) -> None:
        """The caller's turn ended (end of turn): the caller spoke and a reply is now owed.

        Args:
            t_ms: audio time of the commit.
        """
        if self._finished:
            return
        self._dead.on_activity(float(t_ms), "caller")
        self._reply_owed_ms = t_ms
        self._update_busy(t_ms)

    def on_reply_started(self, t_ms: int) -> None:
        """A reply started generating (speculative or not): not dead air until it has played.

        Args:
            t_ms: audio time of the start.
        """
        if self._finished:
            return
        self._reply_owed_ms = t_ms
        self._update_busy(t_ms)

    # --------------------------------------------------------------- internals

    def _emit(self, action: Action, final: bool = False) -> None:
        self._actions.append(action)
        if final:
            self._finished = True

    def _update_busy(self, t_ms: int, restart_ms: int | None = None) -> None:
        busy = self._agent_speaking or self._reply_owed_ms is not None
        if busy != self._busy:
            self._busy = busy
            self._dead.set_busy(busy, float(t_ms if restart_ms is None else restart_ms))

    def _expire_owed_reply(self, t_ms: int) -> None:
        owed = self._reply_owed_ms
        if owed is None or self._agent_speaking or t_ms - owed < self._after_ms:
            return
        self._reply_owed_ms = None
        self._update_busy(t_ms, restart_ms=owed)  # quiet since the reply was owed

    def _poll_dead_air(self, t_ms: int) -> None:
        for decision in self._dead.poll(float(t_ms)):
            if isinstance(decision, CheckIn):
                self._emit(SayCheckIn(text=self._dead_cfg.check_in, n=decision.n, at_ms=t_ms))
            elif isinstance(decision, DeadAirHangUp):
                self._emit(SayAndHangUp(text=self._dead_cfg.goodbye, reason="dead_air", at_ms=t_ms), True)

    def _handle_voicemail(self, t_ms: int) -> None:
        if self._vm is None:
            return
        for event in self._vm.events_received():
            if self._finished:
                return
            if isinstance(event, Voicemail):
                if self._vm_cfg.action == "hangup" or not self._vm_cfg.message.strip():
                    self._emit(HangUp(reason="voicemail", at_ms=t_ms), True)
                else:
                    self._voicemail_ms = t_ms
            elif isinstance(event, Beep) and self._voicemail_ms is not None:
                self._emit(LeaveMessage(text=self._vm_cfg.message, at_ms=t_ms), True)

    def _maybe_leave_message(self, t_ms: int) -> None:
        assert self._vm is not None and self._voicemail_ms is not None
        tuning = self._tuning
        waited = t_ms - self._voicemail_ms
        quiet = self._last_voice_ms is None or t_ms - self._last_voice_ms >= tuning.greeting_end_ms
        tone_in_progress = self._vm.beep_at is not None  # a beep qualified and has not ended yet
        if waited >= tuning.message_max_wait_ms or (
            waited >= tuning.no_beep_wait_ms and quiet and not tone_in_progress
        ):
            self._emit(LeaveMessage(text=self._vm_cfg.message, at_ms=t_ms), True)
