"""SpeechSegmenter: per-stream decisions from per-frame speech probabilities.

Theory of operation
-------------------
The network (:mod:`mediasrv.vad.model`) gives each 20 ms frame a speech probability. This core
turns that sequence into what the turn detector and the ``mediasrv vad`` tool need:

- ``speech``: this frame's own verdict, what the turn detector counts its silence from. Outside
  a speech segment a frame must reach ``on_threshold``; inside one, ``voice_threshold``. The
  segment itself stays open down to ``off_threshold`` (lower still), so a weak consonant does
  not end it, but the network's slow decay after the last word (it falls through 0.5 to 0.35
  over 30-200 ms, longest in noise) does not count as voice: every frame of it would be dead
  air before the turn can end.
- ``active``: the hysteresis state. Speech *starts* after ``onset_frames`` consecutive frames at
  ``on_threshold`` (one strong frame is a click, not a word) and *ends* after
  ``hangover_frames`` consecutive frames under ``off_threshold``.
- Boundaries in audio time. When speech is declared started, ``onset_ms`` estimates where it
  began: the start of the run of frames at or above ``rise_threshold`` that led to the
  decision (at most ``max_backdate_ms`` before it, never before the previous segment's end).
  When it is declared ended, ``offset_ms`` is the end of the last frame that was still speech.
  Both are reported on the frame of the decision, together with the decision time (``t_ms``,
  the end of that frame), so a consumer knows what was decided and when.

Rules: no I/O, no clock: time is the frame count times ``frame_ms``; one object per stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediasrv.codec import FRAME_MS


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """Thresholds and timing of :class:`SpeechSegmenter`.

    Attributes:
        on_threshold: probability a frame needs to count towards a speech onset.
        off_threshold: probability under which a frame inside speech counts as a gap.
        voice_threshold: probability a frame inside speech needs to be reported as ``speech``;
            between ``off_threshold`` and this the segment is held open (and its end estimate
            moves on: ending segments at this threshold splits real speech on real/) but the
            frame is not voice.
        rise_threshold: frames at or above this just before an onset are part of the speech.
        onset_frames: consecutive ``on_threshold`` frames that start speech.
        hangover_frames: consecutive gap frames that end speech.
        max_backdate_ms: an onset estimate is never earlier than this before its decision.
    """

    on_threshold: float = 0.6
    off_threshold: float = 0.35
    voice_threshold: float = 0.5
    rise_threshold: float = 0.25
    onset_frames: int = 2
    hangover_frames: int = 7
    max_backdate_ms: int = 200


@dataclass(frozen=True, slots=True)
class VadResult:
    """What the VAD concluded about one frame.

    Attributes:
        prob: the network's speech probability for the frame.
        speech: this frame's verdict (see :class:`SpeechSegmenter`).
        active: speech is active after hysteresis.
        energy_db: the frame's mean band level in dB (int16 scale).
        noise_db: the estimated line-noise floor in dB.
        voicing: periodicity of the frame, 0..1.
        onset_ms: on the frame where speech was declared started, the estimated start in audio
            time; else None.
        offset_ms: on the frame where speech was declared ended, the estimated end; else None.
    """

    prob: float
    speech: bool
    active: bool
    energy_db: float = 0.0
    noise_db: float = 0.0
    voicing: float = 0.0
    onset_ms: int | None = None
    offset_ms: int | None = None


class SpeechSegmenter:
    """Hysteresis and boundary estimates for one stream (see module docs).

    Args:
        config: thresholds; defaults to :class:`SegmenterConfig`.
        frame_ms: frame length.
    """

    def __init__(self, config: SegmenterConfig | None = None, frame_ms: int = FRAME_MS) -> None:
        self.config = config or SegmenterConfig()
        self.frame_ms = frame_ms
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new call)."""
        self._t_ms = 0
        self._active = False
        self._run = 0  # consecutive onset frames (inactive) or gap frames (active)
        self._rise_start_ms: int | None = None  # start of the current run over rise_threshold
        self._last_speech_end_ms = 0

    @property
    def active(self) -> bool:
        """Whether speech is active (after hysteresis)."""
        return self._active

    @property
    def t_ms(self) -> int:
        """Audio time at the end of the last frame pushed."""
        return self._t_ms

    def push(
        self, prob: float, energy_db: float = 0.0, noise_db: float = 0.0, voicing: float = 0.0
    ) -> VadResult:
        """Take the next frame's probability and return its :class:`VadResult`."""
        cfg = self.config
        start_ms = self._t_ms
        self._t_ms = end_ms = start_ms + self.frame_ms
        onset_ms: int | None = None
        offset_ms: int | None = None
        if prob >= cfg.rise_threshold:
            if self._rise_start_ms is None:
                self._rise_start_ms = start_ms
        else:
            self._rise_start_ms = None
        if self._active:
            speech = prob >= cfg.voice_threshold
            if prob >= cfg.off_threshold:
                self._last_speech_end_ms = end_ms
                self._run = 0
            else:
                self._run += 1
                if self._run >= cfg.hangover_frames:
                    self._active = False
                    self._run = 0
                    offset_ms = self._last_speech_end_ms
        else:
            speech = prob >= cfg.on_threshold
            self._run = self._run + 1 if speech else 0
            if self._run >= cfg.onset_frames:
                self._active = True
                self._run = 0
                earliest = max(end_ms - cfg.max_backdate_ms, self._last_speech_end_ms)
                rise = self._rise_start_ms
                onset_ms = max(
                    earliest, rise if rise is not None else end_ms - cfg.onset_frames * self.frame_ms
                )
                self._last_speech_end_ms = end_ms
        return VadResult(prob, speech, self._active, energy_db, noise_db, voicing, onset_ms, offset_ms)

    def flush(self) -> int | None:
        """End of audio: the estimated end of speech still active (and deactivate), else None."""
        if not self._active:
            return None
        self._active = False
        self._run = 0
        return self._last_speech_end_ms
