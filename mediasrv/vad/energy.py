"""EnergyVad: the first VAD (energy above an adaptive floor + voicing), kept as a baseline.

mediasrv's VAD is :class:`mediasrv.vad.VoiceActivityDetector` (a trained network). This one
is what wave 1 shipped: cheap and quick to open, but it loses speech in line noise. The
benches print it beside the network; ``mediasrv vad --engine energy`` runs it.

Theory of operation
-------------------
The detector is a sans-I/O core: it is fed one 20 ms frame at a time (160 mu-law bytes or
160 int16 samples at 8 kHz) and returns a :class:`VadResult` for that frame. Time is counted in
frames; nothing reads a clock.

Per frame it computes two cheap cues (a handful of numpy calls, no Python loop per sample):

1. **Energy above an adaptive noise floor.** The frame log-energy ``energy_db`` (dB re 1 LSB^2
   per sample) is compared with ``noise_db``, a running estimate of the background level. The
   floor follows the minimum of the energy: it moves *down* fast (``floor_down_rate``) and *up*
   slowly (``floor_up_rate``), and not at all while a voiced frame is being heard, so speech
   does not lift it but a change of line noise is followed within a second or two.
2. **Voicing.** The normalised autocorrelation peak of the frame against the previous 40 ms,
   over lags of 2.5-16.6 ms (pitch 60-400 Hz). Voiced speech, even band-limited to
   300-3400 Hz where the fundamental itself is gone, is periodic at the pitch period and scores
   0.5-0.95; white or pink noise, clicks and most coughs score below 0.3.

Rules:

- A frame is a speech *candidate* when it is ``onset_snr_db`` above the floor, above an absolute
  level ``min_level_db`` (digital silence never counts) and voiced.
- Speech *starts* (``active`` becomes True) after ``onset_frames`` consecutive candidates, so
  a click or a single noisy frame never opens speech.
- While active, a frame counts as speech when it is ``hold_snr_db`` above the floor, voiced or
  not (unvoiced consonants such as the /s/ of "yes" stay inside the word).
- Speech *ends* after ``hangover_frames`` consecutive non-speech frames, or when no voiced
  frame has been heard for ``max_unvoiced_frames`` (a noise step during speech cannot keep the
  detector stuck in speech, and the floor then catches up).
- ``prob`` is a smooth speech score in [0, 1] built from the same two cues, for consumers that
  want their own threshold. ``speech`` is the per-frame decision before hysteresis and
  ``active`` the decision after it.

The G.711 decode indexes a float32 copy of :data:`mediasrv.codec.ULAW_DECODE_TABLE` (ITU-T G.711)
straight into a preallocated buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mediasrv.codec import FRAME_MS, ULAW_DECODE_TABLE
from mediasrv.errors import CodecError
from mediasrv.vad.segmenter import VadResult

SAMPLE_RATE_HZ: Final = 8000
PITCH_MIN_HZ: Final = 60
PITCH_MAX_HZ: Final = 400
_EPS: Final = 1e-9


# float32 copy of the codec's 256-entry mu-law table: decoding straight to float32 saves a cast.
_ULAW_TABLE_F32: Final[NDArray[np.float32]] = ULAW_DECODE_TABLE.astype(np.float32)


@dataclass(frozen=True, slots=True)
class EnergyVadConfig:
    """Tuning of :class:`EnergyVad` (defaults suit 8 kHz telephone speech).

    Attributes:
        onset_snr_db: dB above the noise floor for a frame to be a speech-onset candidate.
        hold_snr_db: dB above the noise floor for a frame to continue speech once active.
        min_level_db: absolute frame level (dB re 1 LSB^2) below which nothing is speech.
        voicing_min: normalised autocorrelation peak a candidate frame needs (0..1).
        onset_frames: consecutive candidate frames before speech becomes active.
        hangover_frames: consecutive non-speech frames before active speech ends.
        max_unvoiced_frames: active speech ends after this many frames without voicing.
        floor_down_rate: per-frame smoothing when the energy is below the floor (fast).
        floor_up_rate: per-frame smoothing upwards on unvoiced frames outside speech (slow).
        floor_up_rate_active: per-frame smoothing upwards on unvoiced frames inside speech.
        floor_max_step_db: the floor never rises more than this per frame.
        floor_init_db: floor before the first frame (the first frame replaces it when lower
            or higher, so the line's own noise level is picked up at once).
        floor_step_frames: outside speech, after this many consecutive frames with no voice
            standing out from them (unvoiced, or voiced but within ``onset_snr_db`` of the
            quietest) the floor rises at once to the quietest of them: a noise step, e.g. the
            line went from digital silence to a noisy room. 0 turns the rule off.
    """

    onset_snr_db: float = 9.0
    hold_snr_db: float = 6.0
    min_level_db: float = 30.0
    voicing_min: float = 0.3
    onset_frames: int = 2
    hangover_frames: int = 8
    max_unvoiced_frames: int = 20
    floor_down_rate: float = 0.2
    floor_up_rate: float = 0.02
    floor_up_rate_active: float = 0.005
    floor_max_step_db: float = 0.5
    floor_init_db: float | None = None
    floor_step_frames: int = 10


class EnergyVad:
    """Energy + voicing VAD with an adaptive noise floor and hysteresis (see module docs).

    Feed frames in order with :meth:`process_ulaw` or :meth:`process_pcm`; each call returns
    that frame's :class:`VadResult`. Call :meth:`reset` between calls or after a long gap.
    """

    def __init__(
        self,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
        frame_ms: int = FRAME_MS,
        config: EnergyVadConfig | None = None,
    ) -> None:
        """Create a detector.

        Args:
            sample_rate_hz: sample rate of the frames (8000 for Telnyx PCMU).
            frame_ms: frame length in ms (20 for Telnyx).
            config: thresholds and rates; defaults to :class:`EnergyVadConfig`.
        """
        self.config = config or EnergyVadConfig()
        self.sample_rate_hz = sample_rate_hz
        self.frame_ms = frame_ms
        self.frame_samples = sample_rate_hz * frame_ms // 1000
        n = self.frame_samples
        self._lag_min = max(1, sample_rate_hz // PITCH_MAX_HZ)
        self._lag_max = min(n - 1, sample_rate_hz // PITCH_MIN_HZ)
        # Two histories of (previous frame + current frame); "current" views are their tails.
        # _raw holds the decoded samples (plus one sample of the frame before for the
        # difference), _diff their first difference: pre-emphasis whitens pink line noise,
        # whose energy sits at the low band edge and otherwise looks periodic.
        self._raw: NDArray[np.float32] = np.zeros(2 * n + 1, dtype=np.float32)
        self._cur: NDArray[np.float32] = self._raw[n + 1 :]
        self._diff: NDArray[np.float32] = np.zeros(2 * n, dtype=np.float32)
        self._diff_cur: NDArray[np.float32] = self._diff[n:]
        # np.correlate(lagged, cur, "valid")[k] is the correlation at lag (lag_max - k).
        self._lagged: NDArray[np.float32] = self._diff[n - self._lag_max : 2 * n - self._lag_min]
        self.reset()

    def reset(self) -> None:
        """Forget all state (noise floor, hysteresis, history): call at the start of a call."""
        self._raw.fill(0.0)
        self._diff.fill(0.0)
        self._prev_diff_energy = 0.0
        init = self.config.floor_init_db
        self._floor_db = init if init is not None else math.nan
        self._active = False
        self._run = 0  # consecutive candidates (inactive) or non-speech frames (active)
        self._unvoiced = 0
        self._quiet_run = 0  # consecutive unvoiced frames outside speech
        self._quiet_min_db = math.inf  # the quietest of them

    @property
    def active(self) -> bool:
        """Whether speech is currently active (after hysteresis)."""
        return self._active

    @property
    def noise_db(self) -> float:
        """Current noise floor estimate in dB re 1 LSB^2 (nan before the first frame)."""
        return self._floor_db

    def process_ulaw(self, frame: bytes) -> VadResult:
        """Analyse one G.711 mu-law frame (``frame_samples`` bytes).

        Args:
            frame: the mu-law payload of one frame, as Telnyx sends it.

        Returns:
            The frame's :class:`VadResult`.

        Raises:
            CodecError: if the frame does not hold ``frame_samples`` bytes.
        """
        if len(frame) != self.frame_samples:
            raise _frame_error(len(frame), self.frame_samples)
        self._shift()
        np.take(_ULAW_TABLE_F32, np.frombuffer(frame, dtype=np.uint8), out=self._cur)
        return self._analyse()

    def process_pcm(self, frame: NDArray[np.int16]) -> VadResult:
        """Analyse one frame of int16 PCM (``frame_samples`` samples).

        Args:
            frame: linear 16-bit samples of one frame.

        Returns:
            The frame's :class:`VadResult`.

        Raises:
            CodecError: if the frame does not hold ``frame_samples`` samples.
        """
        if frame.shape != (self.frame_samples,):
            raise _frame_error(int(frame.size), self.frame_samples)
        self._shift()
        self._cur[:] = frame
        return self._analyse()

    def _shift(self) -> None:
        n = self.frame_samples
        self._raw[: n + 1] = self._raw[n:]

    def _analyse(self) -> VadResult:
        cfg = self.config
        cur = self._cur
        energy = float(np.dot(cur, cur))
        energy_db = 10.0 * math.log10(energy / self.frame_samples + 1.0)
        diff = self._diff_cur
        # first difference of both frames at once (cheaper than shifting the old half)
        np.subtract(self._raw[1:], self._raw[:-1], out=self._diff)
        diff_energy = float(np.dot(diff, diff))
        # The lagged window straddles two frames: normalise by the larger frame energy so the
        # score stays within [0, 1] at onsets and offsets.
        norm = max(diff_energy, self._prev_diff_energy)
        voicing = 0.0
        if norm > _EPS:
            peak = float(np.correlate(self._lagged, diff, "valid").max())
            voicing = min(1.0, max(0.0, peak / norm))
        self._prev_diff_energy = diff_energy
        voiced = voicing >= cfg.voicing_min
        floor = self._floor_db
        if math.isnan(floor):
            floor = energy_db
        snr = energy_db - floor
        loud = energy_db >= cfg.min_level_db
        if self._active:
            # inside speech the hold threshold applies; once in hangover, a frame must clear the
            # onset threshold again (stray noise peaks do not stretch the end of speech)
            speech = loud and snr >= (cfg.hold_snr_db if self._run == 0 else cfg.onset_snr_db)
            self._unvoiced = 0 if voiced else self._unvoiced + 1
            self._run = 0 if speech else self._run + 1
            if self._run >= cfg.hangover_frames or self._unvoiced >= cfg.max_unvoiced_frames:
                self._active = False
                self._run = 0
        else:
            speech = loud and voiced and snr >= cfg.onset_snr_db
            # leaky count: one weak frame inside a syllable delays the onset, it does not reset it
            self._run = self._run + 1 if speech else max(0, self._run - 1)
            if self._run >= cfg.onset_frames:
                self._active = True
                self._run = 0
                self._unvoiced = 0
        self._floor_db = self._next_floor(floor, energy_db, voiced)
        prob = _speech_prob(snr - cfg.hold_snr_db, voicing, cfg.voicing_min, self._active)
        return VadResult(prob, speech, self._active, energy_db, floor, voicing)

    def _next_floor(self, floor: float, energy_db: float, voiced: bool) -> float:
        cfg = self.config
        if self._active or (voiced and energy_db > self._quiet_min_db + cfg.onset_snr_db):
            self._quiet_run = 0
            self._quiet_min_db = math.inf
        else:
            self._quiet_run += 1
            if energy_db < self._quiet_min_db:
                self._quiet_min_db = energy_db
            if cfg.floor_step_frames and self._quiet_run >= cfg.floor_step_frames:
                # a stationary stretch with no voice at all: it is the line's noise
                step_to = self._quiet_min_db
                self._quiet_run = 0
                self._quiet_min_db = math.inf
                if step_to > floor:
                    return step_to
        if energy_db <= floor:
            return floor + cfg.floor_down_rate * (energy_db - floor)
        if voiced:
            return floor
        rate = cfg.floor_up_rate_active if self._active else cfg.floor_up_rate
        return floor + min(cfg.floor_max_step_db, rate * (energy_db - floor))


def _speech_prob(margin_db: float, voicing: float, voicing_min: float, active: bool) -> float:
    """Blend the energy margin and the voicing into a score in [0, 1]."""
    p_energy = 1.0 / (1.0 + math.exp(-0.5 * max(-40.0, min(40.0, margin_db))))
    p_voice = min(1.0, max(0.0, voicing / (2.0 * voicing_min)))
    if active:  # unvoiced frames inside a word still count
        p_voice = max(p_voice, 0.6)
    return p_energy * p_voice


def _frame_error(got: int, want: int) -> CodecError:
    return CodecError(f"VAD frame has {got} samples, expected {want}")
