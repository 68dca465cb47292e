"""Caller voice over the agent: the one place that decides whether a frame is the caller.

Theory of operation
-------------------
While the agent's audio may be on the line (playing, or within the echo path's delay after it
stops), the VAD alone cannot say who is talking: a speakerphone sends our own voice back, the
network's memory keeps calling a few frames "speech" after that echo ends, and a single frame
nobody can explain is not yet a person cutting in. :class:`CallerVoiceGate` takes, per inbound
frame, the VAD verdict, whether our audio is audible, and the echo guard's verdict
(:class:`~mediasrv.turns.echo_guard.EchoGuard`), and returns the verdict the turn detector sees. The
detector then decides overlap, barge-in and backchannel from it and from the words (its rule
7); the call shell applies no audio rule of its own.

Rules, applied while the agent is audible and for ``echo_tail_frames`` after it stops (outside
that window the VAD's verdict passes unchanged and the echo guard is not consulted):

1. A frame the echo guard explains is our own voice: the supervisor hears silence in its place
   (:attr:`CallerVoiceGate.heard_echo`), and a voice frame among them is no voice (counted in
   :attr:`CallerVoiceGate.echo_frames`).
2. While audible, a voice frame must also stand ``min_rise_db`` over the line's noise floor
   (the VAD's mean band level over its floor): the network's verdict outlasts our echo by a
   few frames, the frame's own level does not.
3. While audible, caller voice must last ``debounce_frames`` frames in a row before the
   detector sees any of it: one frame the guard could not explain does not cut the agent off.
4. In the window, "caller active" (what the supervisor counts as the caller talking) is voice
   that passed these rules, not the VAD's hangover over our echo.

Words get the same treatment in the transcript: what the STT hears while we talk that matches
our own recent words is dropped (:func:`~mediasrv.turns.echo_guard.text_is_echo`).

Rules: no I/O, no clock; one object per call; nothing allocated per frame (the verdicts
returned are the VAD's own or a shared constant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mediasrv.vad.segmenter import VadResult

NOT_CALLER: Final = VadResult(prob=0.0, speech=False, active=False, energy_db=0.0, noise_db=0.0)
"""What the turn detector sees for a frame the gate does not attribute to the caller."""


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Timing and levels of :class:`CallerVoiceGate`.

    Attributes:
        echo_tail_frames: frames the gate keeps judging after our audio stops (the echo path's
            delay: the last of our audio is still coming back).
        debounce_frames: consecutive unexplained voice frames before caller voice over the
            agent counts.
        min_rise_db: while our audio may be on the line, a voice frame must stand this far
            above the line's noise floor to count as the caller.
    """

    echo_tail_frames: int = 15
    debounce_frames: int = 2
    min_rise_db: float = 6.0


class CallerVoiceGate:
    """Per-frame judge of caller voice while the agent talks (see module docs).

    Call :meth:`watching` for every inbound frame; when it returns True, get the echo guard's
    verdict for the frame and pass it to :meth:`judge`.

    Args:
        config: timing and levels; defaults to :class:`GateConfig`.
    """

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self._tail = 0
        self._run = 0
        self.echo_frames = 0
        """Voice frames the echo guard explained (our own voice coming back)."""
        self.heard_echo = False
        """The last judged frame was our echo: whoever listens for the caller hears silence."""

    def watching(self, audible: bool) -> bool:
        """Whether this frame is in the window (agent audible, or its echo may still arrive).

        Advances the echo tail; call it once per inbound frame, before :meth:`judge`.
        """
        if audible:
            self._tail = self.config.echo_tail_frames
            return True
        if self._tail:
            self._tail -= 1
            return True
        self._run = 0
        self.heard_echo = False
        return False

    def judge(self, vad: VadResult, audible: bool, echo: bool) -> VadResult:
        """The verdict the turn detector should see for a frame in the window.

        Args:
            vad: the VAD's verdict for the frame.
            audible: our audio is playing now (not only its echo tail).
            echo: the echo guard explains the frame as our own voice.

        Returns:
            ``vad`` itself when the frame is the caller's (or plain silence), else
            :data:`NOT_CALLER`.
        """
        self.heard_echo = echo
        if vad.speech and echo:
            self.echo_frames += 1
            self._run = 0
            return NOT_CALLER
        if not (audible and vad.speech):
            self._run = 0
            return vad
        if vad.energy_db - vad.noise_db < self.config.min_rise_db:
            self._run = 0  # voice by the network's memory, not by the frame's own level
            return NOT_CALLER
        self._run += 1
        return vad if self._run >= self.config.debounce_frames else NOT_CALLER

    @staticmethod
    def caller_active(judged: VadResult) -> bool:
        """In the window: the caller is talking (voice that passed the gate, no hangover)."""
        return judged.active and judged.speech
