"""TurnDetector: sans-I/O turn-taking state machine (VAD + Soniox tokens + agent state).

Theory of operation
-------------------
Inputs, all stamped with audio time ``t_ms`` (ms of caller audio received; frames arrive every
20 ms, so audio time is the detector's clock and no wall clock is read):

* ``on_vad(result, t_ms)`` once per 20 ms frame, ``t_ms`` being the time at the *end* of the
  frame; ``result`` is a :class:`mediasrv.vad.VadResult` (any object with ``speech`` and
  ``active``). A frame is *voice* when the VAD is active and the frame is speech.
* ``on_tokens(final_text_delta, nonfinal_text, t_ms, audio_end_ms=...)`` for every Soniox
  result: the newly final text (finals are sent once) and the current non-final tail (revised
  in every message). ``audio_end_ms``, the end of the newest word in audio time, lets the
  detector tell whether the text already covers the last speech.
* ``on_endpoint("end" | "fin", t_ms)``: Soniox ``<end>`` (its model ended the utterance) and
  ``<fin>`` (answer to our ``finalize``).
* ``set_agent_speaking(bool, t_ms)`` from the playback side.

Outputs: :meth:`events_received` (see :mod:`mediasrv.turns.events`).

Rules:

1. Only this module decides turn ends, barge-in and backchannels.
2. A turn opens on VAD onset (``UserStarted``) or, if the VAD missed it, on words from the STT.
3. After the last voice (a VAD voice frame, or the end of a word the STT heard later than the
   VAD's last voice frame) the detector waits a *hold* that depends on how complete the
   text looks (:func:`~mediasrv.turns.completeness.assess_completeness`): ``hold_ms`` maps
   COMPLETE / LIKELY / UNSURE / INCOMPLETE to short ... long silences. While the text does not
   yet cover the last speech (the STT lags), the hold is at least ``stale_text_wait_ms``.
4. ``UserPaused`` (speculate, send ``finalize``) fires ``speculate_lead_ms`` before the hold
   ends but never before ``speculate_min_ms`` of silence; speech after it gives ``UserResumed``.
   Words that land during the pause change the text and so its hold: ``UserPaused`` fires again
   (with the new text) once the new text's own pause point is reached.
5. ``EndOfTurn`` fires when the silence reaches the hold, at once on ``<end>`` (unless the text
   looks INCOMPLETE or UNSURE: then ``<end>`` only confirms the text, see
   ``TurnConfig.endpoint_always_commits``, and shortens an UNSURE hold to
   ``endpoint_unsure_hold_ms``), or when the agent starts talking over an open turn.
   ``<fin>`` confirms that the text is current.
6. No words: after ``no_text_wait_ms`` of silence the turn ends only if the VAD heard at least
   ``min_voiced_ms_without_text`` of speech; otherwise it was noise (``FalseStart``). Words that
   arrive later open a new turn, so a short answer is never lost.
7. While the agent speaks, user voice opens an *overlap*. Words outside the backchannel lexicon,
   more than ``backchannel_max_words`` words, or ``barge_in_voiced_ms`` of voice make it a
   ``BargeIn`` (the turn continues as a user turn); acknowledgements followed by
   ``backchannel_silence_ms`` of silence make it a ``Backchannel``; wordless short sound is
   dropped silently.
8. Text committed with a turn is not reused: final tokens that arrive after ``EndOfTurn`` for
   words already committed (as non-final) are skipped by character count.

State changes go through :data:`TRANSITIONS`; a pair missing from the table raises
:class:`~mediasrv.errors.FlowError` (a bug in this module, never the caller's input).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from mediasrv.errors import FlowError
from mediasrv.turns.completeness import Completeness, assess_completeness, words_of
from mediasrv.turns.events import (
    AnyTurnEvent,
    Backchannel,
    BargeIn,
    EndOfTurn,
    EndReason,
    FalseStart,
    OverlapDiscarded,
    OverlapStarted,
    UserPaused,
    UserResumed,
    UserStarted,
)

logger = logging.getLogger(__name__)

MARKERS: Final = ("<end>", "<fin>")
BACKCHANNEL_WORDS: Final = frozenset(
    {
        "uh",
        "huh",
        "uh-huh",
        "mm",
        "hmm",
        "mhm",
        "mm-hmm",
        "hm",
        "okay",
        "ok",
        "yeah",
        "yes",
        "yep",
        "yup",
        "right",
        "sure",
        "alright",
        "i",
        "see",
        "got",
        "it",
        "cool",
        "great",
        "good",
        "oh",
        "ah",
        "exactly",
        "true",
        "gotcha",
        "wow",
        "nice",
        "all",
    }
)


class VoiceFrame(Protocol):
    """What the detector reads from a VAD result (``mediasrv.vad.VadResult`` fits)."""

    @property
    def speech(self) -> bool:
        """This frame is speech."""

    @property
    def active(self) -> bool:
        """Speech is active after hysteresis."""


class TurnState(enum.Enum):
    """Who holds the floor."""

    LISTENING = "listening"
    """Nobody speaks; no user turn is open."""
    USER_SPEAKING = "user_speaking"
    USER_PAUSING = "user_pausing"
    """Silence after user speech, shorter than the speculation point."""
    USER_PAUSED = "user_paused"
    """``UserPaused`` was sent; waiting for the hold to end the turn or for speech."""
    AGENT_SPEAKING = "agent_speaking"
    OVERLAP = "overlap"
    """The user makes sound while the agent speaks: backchannel or barge-in, undecided."""


class Trigger(enum.Enum):
    """What moves the machine (derived from the inputs)."""

    VOICE = "voice"
    SILENCE = "silence"
    PAUSE = "pause"
    RESUME = "resume"
    COMMIT = "commit"
    DISCARD = "discard"
    BARGE_IN = "barge_in"
    BACKCHANNEL = "backchannel"
    AGENT_START = "agent_start"
    AGENT_STOP = "agent_stop"


S = TurnState
T = Trigger
TRANSITIONS: Final[Mapping[TurnState, Mapping[Trigger, TurnState]]] = {
    S.LISTENING: {T.VOICE: S.USER_SPEAKING, T.AGENT_START: S.AGENT_SPEAKING, T.AGENT_STOP: S.LISTENING},
    S.USER_SPEAKING: {
        T.SILENCE: S.USER_PAUSING,
        T.COMMIT: S.LISTENING,
        T.AGENT_START: S.OVERLAP,
        T.AGENT_STOP: S.USER_SPEAKING,
    },
    S.USER_PAUSING: {
        T.VOICE: S.USER_SPEAKING,
        T.PAUSE: S.USER_PAUSED,
        T.COMMIT: S.LISTENING,
        T.DISCARD: S.LISTENING,
        T.AGENT_STOP: S.USER_PAUSING,
    },
    S.USER_PAUSED: {
        T.RESUME: S.USER_SPEAKING,
        T.COMMIT: S.LISTENING,
        T.AGENT_STOP: S.USER_PAUSED,
        T.PAUSE: S.USER_PAUSED,
    },
    S.AGENT_SPEAKING: {T.VOICE: S.OVERLAP, T.AGENT_STOP: S.LISTENING, T.AGENT_START: S.AGENT_SPEAKING},
    S.OVERLAP: {
        T.BARGE_IN: S.USER_SPEAKING,
        T.BACKCHANNEL: S.AGENT_SPEAKING,
        T.DISCARD: S.AGENT_SPEAKING,
        T.AGENT_STOP: S.USER_SPEAKING,
        T.AGENT_START: S.OVERLAP,
    },
}
"""state -> trigger -> next state. Every change of state goes through this table."""
del S, T

_USER_OPEN: Final = (TurnState.USER_SPEAKING, TurnState.USER_PAUSING, TurnState.USER_PAUSED)


def _default_holds() -> dict[Completeness, int]:
    return {
        Completeness.COMPLETE: 200,
        Completeness.LIKELY: 300,
        Completeness.UNSURE: 700,
        Completeness.INCOMPLETE: 1200,
    }


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """Timing of :class:`TurnDetector` (all in ms of audio).

    Attributes:
        frame_ms: VAD frame length.
        hold_ms: silence needed to end the turn, per completeness verdict.
        stale_text_wait_ms: minimum hold while the text does not cover the last speech.
        coverage_slack_ms: the newest word may end this much before the last voice frame
            and still count as covering it (VAD and STT disagree on word edges; the VAD's
            network holds speech ~50-100 ms past the last word, more in noise).
        speculate_min_ms: earliest ``UserPaused`` after the last voice.
        speculate_lead_ms: ``UserPaused`` comes this long before the hold ends.
        finalize_min_ms: silence before a ``UserPaused`` asks for the STT's ``finalize``
            (:attr:`UserPaused.finalize`; the STT allows one every few seconds).
        no_text_wait_ms: silence after which a wordless turn is judged.
        min_voiced_ms_without_text: voice a wordless turn needs to end as a turn (else noise).
        barge_in_voiced_ms: voice during agent speech that is a barge-in whatever the words.
        backchannel_max_words: more words than this are never a backchannel.
        backchannel_silence_ms: silence after an acknowledgement before it is a backchannel.
        endpoint_always_commits: if False (default), a Soniox ``<end>`` after text that is
            INCOMPLETE or UNSURE ("my account number is") does not end the turn; it only marks
            the text as current. Soniox documents ``<end>`` as semantic, but a silence-based
            endpoint (or a slow talker) must not cut a caller off mid-clause.
        speculate_coverage_slack_ms: ``coverage_slack_ms`` for :attr:`TurnDetector.text_is_current`
            (may a speculative reply start on these words?). The same as the holds' slack since
            the neural VAD (which trails the last word by 50-100 ms) replaced the energy VAD.
        endpoint_unsure_hold_ms: the hold of UNSURE text once Soniox has sent ``<end>`` after
            the last voice: two independent judges (its endpoint model, our text rules) both
            lean towards "finished", so the turn ends sooner than the UNSURE hold alone, but
            still later than LIKELY text (a reading of digit groups pauses 300-400 ms).
        endpoint_voice_grace_ms: an ``<end>`` that arrives while the VAD hears the caller
            speaking does not end the turn (the caller went on after the pause Soniox judged);
            it stands if no new word arrives for this long while the "voice" goes on (a VAD
            hearing a noisy room, not the caller).
        wordless_voice_ms: finished, final words followed by this long of "voice" with no new
            word (not even a non-final one) end the turn: the STT hears nobody speaking in it.
    """

    frame_ms: int = 20
    hold_ms: Mapping[Completeness, int] = field(default_factory=_default_holds)
    stale_text_wait_ms: int = 700
    coverage_slack_ms: int = 150
    speculate_min_ms: int = 120
    speculate_lead_ms: int = 400
    finalize_min_ms: int = 120
    no_text_wait_ms: int = 800
    min_voiced_ms_without_text: int = 600
    barge_in_voiced_ms: int = 700
    backchannel_max_words: int = 3
    backchannel_silence_ms: int = 300
    endpoint_always_commits: bool = False
    endpoint_unsure_hold_ms: int = 500
    speculate_coverage_slack_ms: int = 150
    endpoint_voice_grace_ms: int = 800
    wordless_voice_ms: int = 1000


class TurnDetector:
    """Decides turn ends, speculation points, barge-ins and backchannels (see module docs).

    Feed ``on_vad`` per frame, ``on_tokens``/``on_endpoint`` per STT result and
    ``set_agent_speaking`` on playback changes; after each call, drain ``events_received()``.
    """

    def __init__(self, config: TurnConfig | None = None) -> None:
        """Create a detector in :attr:`TurnState.LISTENING`.

        Args:
            config: timing; defaults to :class:`TurnConfig`.
        """
        self.config = config or TurnConfig()
        self._state = TurnState.LISTENING
        self._events: list[AnyTurnEvent] = []
        self._final = ""  # final text of the open turn
        self._nonfinal = ""  # latest non-final tail (after skipping committed text)
        self._skip_chars = 0  # characters of upcoming final text already committed
        self._text_end_ms: int | None = None  # audio end of the newest word
        self._text_update_ms = -1  # when the text last changed
        self._fin_ms = -1
        self._endpoint_ms = -1  # when Soniox last sent <end>
        self._deferred_end: tuple[int, str] | None = None  # an <end> heard mid-speech, its words
        self._paused_text = ""  # the text of the last UserPaused
        self._finalize_asked = False  # a UserPaused of this pause asked for finalize
        self._last_voice_ms = 0
        self._voiced_ms = 0
        self._now_ms = 0

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> TurnState:
        """Current state."""
        return self._state

    @property
    def turn_text(self) -> str:
        """Words of the open turn (or overlap) so far: final plus non-final."""
        return (self._final + self._nonfinal).strip()

    @property
    def speculation_due(self) -> bool:
        """Whether the silence so far has reached the pause point of the *current* text.

        True only while the caller is silent after speaking (pausing or paused) and the silence
        is at least ``max(speculate_min_ms, hold - speculate_lead_ms)`` for how finished the
        words look now: a reply to "I'm calling about the" is not worth starting 40 ms into a
        gap between words, one to "what is the price of the pro plan?" is.
        """
        if self._state not in (TurnState.USER_PAUSING, TurnState.USER_PAUSED):
            return False
        text = self.turn_text
        if not text:
            return False
        hold = self._hold_ms(assess_completeness(text).verdict)
        return self._now_ms - self._last_voice_ms >= self._pause_point_ms(hold)

    def _pause_point_ms(self, hold_ms: int) -> int:
        """Silence after which ``UserPaused`` fires for text whose hold is ``hold_ms``."""
        return max(self.config.speculate_min_ms, hold_ms - self.config.speculate_lead_ms)

    @property
    def text_is_current(self) -> bool:
        """Whether :attr:`turn_text` already holds the last speech the VAD heard.

        False while the STT lags the audio (its newest word ends well before the last voice
        frame, see ``TurnConfig.speculate_coverage_slack_ms``, and no ``<fin>``/``<end>`` came
        since): a reply to this text would answer words the caller has already gone past.
        """
        return self._covered(self.config.speculate_coverage_slack_ms)

    def _fire(self, trigger: Trigger) -> None:
        try:
            target = TRANSITIONS[self._state][trigger]
        except KeyError:
            raise FlowError(f"turns: no transition from {self._state.name} on {trigger.name}") from None
        if target is not self._state:
            logger.debug("turns %s -[%s]-> %s", self._state.name, trigger.name, target.name)
        self._state = target

    # ----------------------------------------------------------------- inputs

    def on_vad(self, result: VoiceFrame, t_ms: int) -> None:
        """Take the VAD verdict for the frame that ends at ``t_ms``; then drain events.

        Args:
            result: the frame's VAD result.
            t_ms: audio time at the end of the frame.
        """
        self._now_ms = t_ms
        if result.active and result.speech:
            self._last_voice_ms = t_ms
            self._voiced_ms += self.config.frame_ms
            self._on_voice(t_ms)
        else:
            self._on_quiet(t_ms)

    def on_tokens(
        self, final_text_delta: str, nonfinal_text: str, t_ms: int, audio_end_ms: int | None = None
    ) -> None:
        """Take one Soniox result; then drain events.

        Args:
            final_text_delta: text of the tokens that became final in this result
                (markers allowed: ``<end>``/``<fin>`` are stripped and acted on).
            nonfinal_text: the whole non-final tail of this result.
            t_ms: audio time at which the result arrived.
            audio_end_ms: end (audio time) of the newest word token in the result, if known.
        """
        self._now_ms = max(self._now_ms, t_ms)
        markers = [m for m in MARKERS if m in final_text_delta]
        for marker in MARKERS:
            final_text_delta = final_text_delta.replace(marker, "")
        before = self.turn_text
        if self._skip_chars:
            cut = min(self._skip_chars, len(final_text_delta))
            final_text_delta = final_text_delta[cut:]
            self._skip_chars -= cut
        self._final += final_text_delta
        self._nonfinal = nonfinal_text[self._skip_chars :]
        if audio_end_ms is not None:
            self._text_end_ms = max(self._text_end_ms or 0, audio_end_ms)
            if (
                self._state in _USER_OPEN
                and audio_end_ms > self._last_voice_ms + self.config.coverage_slack_ms
            ):
                # The STT heard a word ending after the VAD's last voice frame (quiet speech in
                # noise): the word is evidence of speech, so the silence starts after it.
                self._last_voice_ms = min(audio_end_ms, t_ms)
        if self.turn_text != before:
            self._text_update_ms = t_ms
            self._on_text(t_ms, audio_end_ms)
        for marker in markers:
            self.on_endpoint("end" if marker == "<end>" else "fin", t_ms)

    def on_endpoint(self, kind: Literal["end", "fin"], t_ms: int) -> None:
        """Take a Soniox marker; then drain events.

        ``<end>`` ("all earlier tokens become final at once") ends an open turn immediately;
        ``<fin>`` answers our ``finalize`` and marks the text as current.

        Args:
            kind: ``"end"`` or ``"fin"``.
            t_ms: audio time at which the marker arrived.
        """
        self._now_ms = max(self._now_ms, t_ms)
        if kind == "fin":
            self._fin_ms = t_ms
            if self._state in (TurnState.USER_PAUSING, TurnState.USER_PAUSED):
                self._evaluate_pause(t_ms)
            return
        if not self.turn_text:
            return
        if self._state is TurnState.LISTENING:
            self._open_from_text(t_ms, None)
        if self._state is TurnState.OVERLAP:
            if self._overlap_is_backchannel():
                self._backchannel(t_ms)
                return
            self._barge_in(t_ms)
        if self._state in _USER_OPEN:
            verdict = assess_completeness(self.turn_text).verdict
            if (
                self._state is TurnState.USER_SPEAKING
                and t_ms - self._last_voice_ms <= self.config.frame_ms
                and not self.config.endpoint_always_commits
            ):
                # The caller is talking right now: an <end> decided on audio before this breath
                # is stale. The words count as current; the coming pause ends the turn after
                # its hold, or, if no new word comes for endpoint_voice_grace_ms of "voice"
                # (a VAD hearing the room, not the caller), the <end> stands.
                self._fin_ms = t_ms
                self._endpoint_ms = t_ms
                self._deferred_end = (t_ms, self.turn_text)
                return
            if verdict <= Completeness.UNSURE and not self.config.endpoint_always_commits:
                # The words end on "is", "and", a filler, half a phone number or a bare first
                # name: take <end> as "the text is current" and wait out the hold instead
                # (shortened for UNSURE text, see TurnConfig.endpoint_unsure_hold_ms).
                self._fin_ms = t_ms
                self._endpoint_ms = t_ms
                self._evaluate_pause(t_ms)
                return
            self._commit(t_ms, "endpoint", verdict)

    def set_agent_speaking(self, speaking: bool, t_ms: int) -> None:
        """Tell the detector the agent started or stopped playing audio; then drain events.

        An agent that starts talking over an open user turn ends that turn (``EndOfTurn`` with
        reason ``agent``) unless the user is mid-speech, which makes it an overlap.

        Args:
            speaking: True when playback starts, False when it ends (or was cleared).
            t_ms: audio time of the change.
        """
        self._now_ms = max(self._now_ms, t_ms)
        if not speaking:
            was_overlap = self._state is TurnState.OVERLAP
            self._fire(Trigger.AGENT_STOP)
            if was_overlap:
                self._events.append(UserStarted(t_ms=t_ms))
            return
        if self._state in (TurnState.USER_PAUSING, TurnState.USER_PAUSED):
            self._commit(t_ms, "agent")
        if self._state is TurnState.USER_SPEAKING:
            self._begin_overlap()
        self._fire(Trigger.AGENT_START)

    def next_deadline(self) -> int | None:
        """Audio time by which :meth:`handle_timer` should run if no frame arrives first.

        Returns:
            None when nothing is pending; else the next frame time (the detector judges
            silences frame by frame, and a stalled stream counts as silence). A turn that is
            open (the caller speaking, pausing or paused) or an overlap is pending: if the
            stream stops sending mid-word, that time is silence too.
        """
        if self._state in _USER_OPEN or self._state is TurnState.OVERLAP:
            return self._now_ms + self.config.frame_ms
        return None

    def handle_timer(self, t_ms: int) -> None:
        """Treat the time up to ``t_ms`` as silence (no audio arrived); then drain events.

        Args:
            t_ms: current audio-equivalent time.
        """
        if t_ms <= self._now_ms:
            return
        self._now_ms = t_ms
        self._on_quiet(t_ms)

    def events_received(self) -> list[AnyTurnEvent]:
        """Return and clear the events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    # --------------------------------------------------------------- internals

    def _on_voice(self, t_ms: int) -> None:
        state = self._state
        deferred = self._deferred_end
        if deferred is not None:
            if state is not TurnState.USER_SPEAKING or self.turn_text != deferred[1]:
                self._deferred_end = None  # new words (or a pause) took over from that <end>
            elif t_ms - deferred[0] >= self.config.endpoint_voice_grace_ms:
                self._deferred_end = None
                self._commit(t_ms, "endpoint")
                return
        if (
            state is TurnState.USER_SPEAKING
            and t_ms - self._text_update_ms >= self.config.wordless_voice_ms
            and self._final
            and not self._nonfinal.strip()
            and assess_completeness(self.turn_text).verdict >= Completeness.LIKELY
        ):
            # Finished words, all final, and "voice" that brings no new word for this long:
            # the STT hears no speech in it, so it is the room (babble, a TV), not the caller.
            self._commit(t_ms, "wordless_voice")
            return
        if state is TurnState.LISTENING:
            self._open_turn(t_ms)
        elif state is TurnState.USER_PAUSING:
            self._fire(Trigger.VOICE)
        elif state is TurnState.USER_PAUSED:
            self._fire(Trigger.RESUME)
            self._events.append(UserResumed(t_ms=t_ms))
        elif state is TurnState.AGENT_SPEAKING:
            self._begin_overlap()
            self._voiced_ms = self.config.frame_ms
            self._fire(Trigger.VOICE)
            self._events.append(OverlapStarted(t_ms=t_ms))
        elif state is TurnState.OVERLAP:
            self._evaluate_overlap(t_ms, voice=True)

    def _on_quiet(self, t_ms: int) -> None:
        state = self._state
        if state is TurnState.USER_SPEAKING:
            self._fire(Trigger.SILENCE)
            self._evaluate_pause(t_ms)
        elif state in (TurnState.USER_PAUSING, TurnState.USER_PAUSED):
            self._evaluate_pause(t_ms)
        elif state is TurnState.OVERLAP:
            self._evaluate_overlap(t_ms, voice=False)

    def _on_text(self, t_ms: int, audio_end_ms: int | None) -> None:
        if not self.turn_text:
            return
        state = self._state
        if state is TurnState.LISTENING:
            self._open_from_text(t_ms, audio_end_ms)
        elif state is TurnState.AGENT_SPEAKING:
            self._begin_overlap()
            self._last_voice_ms = audio_end_ms if audio_end_ms is not None else t_ms
            self._fire(Trigger.VOICE)
            self._events.append(OverlapStarted(t_ms=t_ms))
            self._evaluate_overlap(t_ms, voice=False)
        elif state is TurnState.OVERLAP:
            self._evaluate_overlap(t_ms, voice=False)
        elif state in (TurnState.USER_PAUSING, TurnState.USER_PAUSED):
            self._evaluate_pause(t_ms)

    def _open_turn(self, t_ms: int) -> None:
        self._voiced_ms = self.config.frame_ms
        self._fire(Trigger.VOICE)
        self._events.append(UserStarted(t_ms=t_ms))

    def _open_from_text(self, t_ms: int, audio_end_ms: int | None) -> None:
        """Words arrived with no open turn: the VAD missed the speech; open the turn now."""
        self._open_turn(t_ms)
        self._voiced_ms = 0
        self._last_voice_ms = min(t_ms, audio_end_ms) if audio_end_ms is not None else t_ms
        self._fire(Trigger.SILENCE)

    def _begin_overlap(self) -> None:
        self._voiced_ms = 0

    def _covered(self, slack_ms: int | None = None) -> bool:
        """Whether the text already includes the last speech the VAD heard."""
        last = self._last_voice_ms
        if self._fin_ms >= last:
            return True
        if self._text_end_ms is not None:
            slack = self.config.coverage_slack_ms if slack_ms is None else slack_ms
            return self._text_end_ms >= last - slack
        return self._text_update_ms >= last

    def _text_hold_ms(self, verdict: Completeness) -> int:
        """The hold the words call for, were they known to be current."""
        hold = self.config.hold_ms[verdict]
        if verdict is Completeness.UNSURE and self._endpoint_ms >= self._last_voice_ms:
            hold = min(hold, self.config.endpoint_unsure_hold_ms)
        return hold

    def _hold_ms(self, verdict: Completeness) -> int:
        hold = self._text_hold_ms(verdict)
        if not self._covered():
            hold = max(hold, self.config.stale_text_wait_ms)
        return hold

    def _evaluate_pause(self, t_ms: int) -> None:
        cfg = self.config
        silence = t_ms - self._last_voice_ms
        text = self.turn_text
        if not text:
            if silence < cfg.no_text_wait_ms:
                return
            if self._voiced_ms >= cfg.min_voiced_ms_without_text:
                self._commit(t_ms, "no_text")
            else:
                self._fire(Trigger.DISCARD)
                self._events.append(FalseStart(t_ms=t_ms, voiced_ms=self._voiced_ms))
            return
        verdict = assess_completeness(text).verdict
        hold = self._hold_ms(verdict)
        if silence >= hold:
            self._commit(t_ms, "silence", verdict)
        # The pause point follows the words alone: for stale text (the STT has not caught up
        # with the last voice) UserPaused asks for ``finalize`` as early as for current text, so
        # the <fin> that makes it current lands inside the hold instead of after the stale wait.
        elif silence >= self._pause_point_ms(self._text_hold_ms(verdict)):
            first = self._state is TurnState.USER_PAUSING
            if first:
                self._finalize_asked = False
            finalize = silence >= cfg.finalize_min_ms and not self._finalize_asked
            if first or finalize or text != self._paused_text:
                self._paused_text = text
                self._finalize_asked |= finalize
                self._fire(Trigger.PAUSE)
                self._events.append(
                    UserPaused(t_ms=t_ms, text=text, verdict=verdict, silence_ms=silence, finalize=finalize)
                )

    def _overlap_is_backchannel(self) -> bool:
        words = words_of(self.turn_text)
        return 0 < len(words) <= self.config.backchannel_max_words and all(
            w in BACKCHANNEL_WORDS for w in words
        )

    def _evaluate_overlap(self, t_ms: int, *, voice: bool) -> None:
        cfg = self.config
        words = words_of(self.turn_text)
        if words and not self._overlap_is_backchannel() or self._voiced_ms >= cfg.barge_in_voiced_ms:
            self._barge_in(t_ms)
            return
        if voice:
            return
        silence = t_ms - self._last_voice_ms
        if words and silence >= cfg.backchannel_silence_ms:
            self._backchannel(t_ms)
        elif not words and silence >= cfg.no_text_wait_ms:
            self._fire(Trigger.DISCARD)
            self._events.append(OverlapDiscarded(t_ms=t_ms))

    def _barge_in(self, t_ms: int) -> None:
        self._fire(Trigger.BARGE_IN)
        self._events.append(BargeIn(t_ms=t_ms, text=self.turn_text))

    def _backchannel(self, t_ms: int) -> None:
        self._fire(Trigger.BACKCHANNEL)
        self._events.append(Backchannel(t_ms=t_ms, text=self.turn_text))
        self._consume_text()

    def _commit(self, t_ms: int, reason: EndReason, verdict: Completeness | None = None) -> None:
        text = self.turn_text
        if verdict is None:
            verdict = assess_completeness(text).verdict
        silence = max(0, t_ms - self._last_voice_ms)
        self._fire(Trigger.COMMIT)
        self._events.append(
            EndOfTurn(t_ms=t_ms, text=text, reason=reason, verdict=verdict, silence_ms=silence)
        )
        self._consume_text()

    def _consume_text(self) -> None:
        """The current words belong to a decided turn: later finals for them are skipped."""
        self._skip_chars += len(self._nonfinal)
        self._final = ""
        self._nonfinal = ""
        self._voiced_ms = 0
