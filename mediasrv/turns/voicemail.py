"""VoicemailDetector: answering machine / IVR or human, in the first seconds of a call.

Theory of operation
-------------------
A sans-I/O core. Every input carries ``t_s``, seconds since the call was answered (audio time
at the end of the frame or result); nothing reads a clock. Inputs:

* :meth:`~VoicemailDetector.on_text` with each *final* transcript piece;
* :meth:`~VoicemailDetector.on_vad` with the VAD's ``active`` flag for every 20 ms frame;
* :meth:`~VoicemailDetector.on_audio` with the raw mu-law frame (beep detector);
* :meth:`~VoicemailDetector.set_agent_speaking` when the agent's playback starts and stops.

Rules (first verdict wins and is final; nothing is decided after ``window_s``):

1. **Pattern.** The final text heard so far matches a voicemail or IVR phrase
   (:data:`VOICEMAIL_PATTERNS`: "leave a message", "after the tone", "not available",
   "voicemail", "mailbox", "press 1", "for English", ...): ``Voicemail("pattern")``.
2. **Monologue.** The caller speaks near-continuously (gaps under ``monologue_gap_s``) for
   ``monologue_s`` in a run that did not start as a reply to the agent (speech that simply goes
   on over the agent is no exchange): ``Voicemail("monologue")``. People answer with
   a short greeting and wait; machines read their greeting to the end.
3. **Beep.** A steady pure tone of 400-2500 Hz lasting ``beep_min_s`` (per frame: a Hann-windowed
   spectrum whose strongest peak holds ``beep_peak_share`` of the band's energy; across frames:
   the same frequency within ``beep_freq_tol_hz`` and the same level within ``beep_level_tol_db``):
   ``Voicemail("beep")``. Speech is never that pure for that long (its harmonics share the
   energy and its pitch and loudness move).
4. **Human.** The caller's speech before the agent's first turn was a short greeting (no run
   longer than ``greeting_max_s``) and the caller started speaking again after an agent turn
   ended: a normal exchange, ``Human``.
5. The beep detector keeps running after a ``Voicemail`` verdict (for up to ``beep_wait_s``) so
   the runner can leave its message after the beep: a :class:`Beep` event (start, end,
   frequency) is emitted when the tone ends, and :attr:`~VoicemailDetector.beep_at` is set as
   soon as a tone qualifies.

Outputs: :meth:`~VoicemailDetector.events_received` and the :attr:`~VoicemailDetector.verdict`
property. The runner decides what to do (hang up, or leave a message after the beep).
Known limit: a machine greeting with a pause long enough for the agent to speak and stop before
it goes on can look like an exchange (rule 4); its phrases then no longer change the verdict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from mediasrv.codec import ULAW_DECODE_TABLE
from mediasrv.errors import CodecError

SAMPLE_RATE_HZ: Final = 8000
FRAME_SAMPLES: Final = 160
FFT_SIZE: Final = 256
BIN_HZ: Final = SAMPLE_RATE_HZ / FFT_SIZE
BAND_HZ: Final = (300.0, 3400.0)
"""The telephone band the beep's share of energy is measured in."""

VOICEMAIL_PATTERNS: Final[tuple[str, ...]] = (
    r"\bleave (?:a |your |me a |us a )?(?:message|voice ?mail|name and number)\b",
    r"\b(?:after|at) the (?:tone|beep)\b",
    r"\bnot available\b",
    r"\bunavailable\b",
    r"\bvoice ?mail\b",
    r"\bvoice messag(?:e|es|ing)\b",
    r"\bmail ?box\b",
    r"\brecord your message\b",
    r"\bcan ?(?:not|'t) (?:come to|take|answer) (?:the|your) (?:phone|call)\b",
    r"\bthe (?:person|party|number) you (?:are|have|were) (?:calling|called|dialed|trying)\b",
    # IVR menus
    r"\bpress (?:\d|one|two|three|four|five|six|seven|eight|nine|zero|star|pound)\b",
    r"\bfor english\b",
    r"\bpara espa",
    r"\b(?:main )?menu options\b",
    r"\byour call (?:is|may be) (?:important|recorded|monitored)\b",
)
"""Phrases of answering machines and IVR menus (matched on lower-cased, punctuation-free text)."""
_PATTERN_RE: Final = re.compile("|".join(f"(?:{p})" for p in VOICEMAIL_PATTERNS))
_NORM_RE: Final = re.compile(r"[^a-z0-9' ]+")
_ULAW_F32: Final[NDArray[np.float32]] = ULAW_DECODE_TABLE.astype(np.float32)
_WINDOW: Final[NDArray[np.float32]] = np.hanning(FRAME_SAMPLES).astype(np.float32)
_BAND_LO: Final = int(BAND_HZ[0] / BIN_HZ)
_BAND_HI: Final = int(BAND_HZ[1] / BIN_HZ) + 1


class Voicemail(msgspec.Struct, frozen=True, kw_only=True, tag="voicemail"):
    """A machine or an IVR answered.

    Attributes:
        reason: which rule decided (``pattern``, ``monologue``, ``beep``).
        at_s: when it was decided (for ``beep``: when the tone started).
        detail: the matched phrase, for ``pattern``.
    """

    reason: Literal["pattern", "monologue", "beep"]
    at_s: float
    detail: str = ""


class Human(msgspec.Struct, frozen=True, kw_only=True, tag="human"):
    """A person answered: a short greeting, then a reply to the agent.

    Attributes:
        at_s: when it was decided.
    """

    at_s: float


class Beep(msgspec.Struct, frozen=True, kw_only=True, tag="beep"):
    """A voicemail beep ended: the recording has started.

    Attributes:
        start_s: when the tone started.
        end_s: when it ended (leave the message from here).
        freq_hz: its frequency.
    """

    start_s: float
    end_s: float
    freq_hz: float


AmdVerdict = Voicemail | Human
VoicemailEvent = Voicemail | Human | Beep


@dataclass(frozen=True, slots=True)
class VoicemailDetectorConfig:
    """Tuning of :class:`VoicemailDetector` (times in seconds).

    Attributes:
        monologue_s: continuous caller speech before any exchange that means a machine.
        monologue_gap_s: pauses shorter than this do not break a monologue.
        greeting_max_s: a human greeting's longest speech run.
        beep_min_s: duration a tone needs to be a beep.
        beep_min_hz: lowest beep frequency.
        beep_max_hz: highest beep frequency.
        beep_peak_share: share of the band's energy the spectral peak (+-2 bins) must hold.
        beep_freq_tol_hz: frame-to-frame frequency tolerance inside one tone.
        beep_level_tol_db: level tolerance inside one tone (against its first frame).
        beep_min_level_db: a tone quieter than this (dB re 1 LSB^2 per sample) is ignored.
        beep_wait_s: how long after a ``Voicemail`` verdict the beep detector keeps listening.
    """

    monologue_s: float = 12.0
    monologue_gap_s: float = 1.0
    greeting_max_s: float = 4.0
    beep_min_s: float = 0.16
    beep_min_hz: float = 400.0
    beep_max_hz: float = 2500.0
    beep_peak_share: float = 0.85
    beep_freq_tol_hz: float = 10.0
    beep_level_tol_db: float = 1.5
    beep_min_level_db: float = 35.0
    beep_wait_s: float = 30.0


class VoicemailDetector:
    """Answering-machine / IVR detection for the start of a call (see module docs)."""

    def __init__(self, window_s: float = 30.0, config: VoicemailDetectorConfig | None = None) -> None:
        """Create a detector for a call answered at ``t_s = 0``.

        Args:
            window_s: decisions are made only within this many seconds of the answer.
            config: tuning; defaults to :class:`VoicemailDetectorConfig`.
        """
        self.window_s = window_s
        self.config = config or VoicemailDetectorConfig()
        self._events: list[VoicemailEvent] = []
        self._verdict: AmdVerdict | None = None
        self._text = ""
        # caller speech runs (VAD)
        self._run_start: float | None = None
        self._last_active = -math.inf
        self._longest_greeting = 0.0
        # agent turns
        self._agent_speaking = False
        self._agent_turn_ended_at: float | None = None
        # beep tracker: (start_s, freq_hz, level_db, frames) of the current tonal run
        self._tone: tuple[float, float, float, int] | None = None
        self._beep_at: float | None = None
        self._beep_reported = False
        self._spectrum_in: NDArray[np.float32] = np.zeros(FRAME_SAMPLES, dtype=np.float32)

    # ----------------------------------------------------------------- outputs

    @property
    def verdict(self) -> AmdVerdict | None:
        """The verdict so far (None: undecided)."""
        return self._verdict

    @property
    def beep_at(self) -> float | None:
        """Start of the first beep found (None: none yet)."""
        return self._beep_at

    @property
    def listening_for_beep(self) -> bool:
        """Whether :meth:`on_audio` still does anything at the latest time seen."""
        return not self._beep_reported and not isinstance(self._verdict, Human)

    def events_received(self) -> list[VoicemailEvent]:
        """Return and clear the events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ inputs

    def on_text(self, final_text: str, t_s: float) -> None:
        """Take a final transcript piece heard at ``t_s``; then drain events.

        Args:
            final_text: newly final words (Soniox final tokens, markers removed).
            t_s: seconds since the answer.
        """
        if self._verdict is not None or t_s > self.window_s:
            return
        self._text = f"{self._text} {_NORM_RE.sub(' ', final_text.lower())}"
        self._text = " ".join(self._text.split())
        match = _PATTERN_RE.search(self._text)
        if match:
            self._decide(Voicemail(reason="pattern", at_s=t_s, detail=match.group(0)))

    def on_vad(self, active: bool, t_s: float) -> None:
        """Take the VAD's ``active`` flag for the frame ending at ``t_s``; then drain events.

        Args:
            active: speech is active on the inbound leg (after hysteresis).
            t_s: seconds since the answer.
        """
        if not active:
            return
        cfg = self.config
        new_run = self._run_start is None or t_s - self._last_active > cfg.monologue_gap_s
        if new_run:
            self._run_start = t_s
        self._last_active = t_s
        assert self._run_start is not None
        run_s = t_s - self._run_start
        if self._agent_turn_ended_at is None:
            self._longest_greeting = max(self._longest_greeting, run_s)
        if self._verdict is not None or t_s > self.window_s:
            return
        replied = (
            self._agent_turn_ended_at is not None
            and self._run_start >= self._agent_turn_ended_at
            and not self._agent_speaking
        )
        if replied and self._longest_greeting <= cfg.greeting_max_s:
            self._decide(Human(at_s=t_s))
        elif run_s >= cfg.monologue_s and not replied:
            self._decide(Voicemail(reason="monologue", at_s=t_s))

    def set_agent_speaking(self, speaking: bool, t_s: float) -> None:
        """Tell the detector the agent's playback started or stopped.

        Args:
            speaking: True at the start of playback, False at its end.
            t_s: seconds since the answer.
        """
        if self._agent_speaking and not speaking and self._agent_turn_ended_at is None:
            self._agent_turn_ended_at = t_s
        self._agent_speaking = speaking

    def on_audio(self, ulaw_frame: bytes, t_s: float) -> None:
        """Run the beep detector on one inbound frame ending at ``t_s``; then drain events.

        Cheap (one 256-point FFT); skipped once a beep was reported, after a ``Human`` verdict,
        after the window without a verdict, and ``beep_wait_s`` after a ``Voicemail`` verdict.

        Args:
            ulaw_frame: 160 bytes of mu-law (20 ms at 8 kHz).
            t_s: seconds since the answer, at the end of the frame.

        Raises:
            CodecError: the frame is not 160 bytes.
        """
        if len(ulaw_frame) != FRAME_SAMPLES:
            raise CodecError(f"voicemail: frame has {len(ulaw_frame)} bytes, expected {FRAME_SAMPLES}")
        if not self._beep_window_open(t_s):
            return
        tone = _tone_of(ulaw_frame, self._spectrum_in)
        cfg = self.config
        if tone is not None and not (
            cfg.beep_min_hz <= tone[0] <= cfg.beep_max_hz
            and tone[1] >= cfg.beep_min_level_db
            and tone[2] >= cfg.beep_peak_share
        ):
            tone = None
        self._track_tone(tone, t_s)

    # --------------------------------------------------------------- internals

    def _decide(self, verdict: AmdVerdict) -> None:
        self._verdict = verdict
        self._events.append(verdict)

    def _beep_window_open(self, t_s: float) -> bool:
        verdict = self._verdict
        if self._beep_reported or isinstance(verdict, Human):
            return False
        if verdict is None:
            return t_s <= self.window_s or self._tone is not None
        return t_s <= verdict.at_s + self.config.beep_wait_s or self._tone is not None

    def _track_tone(self, tone: tuple[float, float, float] | None, t_s: float) -> None:
        cfg = self.config
        frame_s = FRAME_SAMPLES / SAMPLE_RATE_HZ
        run = self._tone
        if tone is not None and run is not None:
            start, freq, level, frames = run
            if abs(tone[0] - freq) <= cfg.beep_freq_tol_hz and abs(tone[1] - level) <= cfg.beep_level_tol_db:
                self._tone = (start, freq, level, frames + 1)
                if (frames + 1) * frame_s >= cfg.beep_min_s - 1e-9 and self._beep_at is None:
                    self._beep_at = start
                    if self._verdict is None and start <= self.window_s:
                        self._decide(Voicemail(reason="beep", at_s=start))
                return
        if run is not None and run[3] * frame_s >= cfg.beep_min_s - 1e-9:
            end = t_s - frame_s
            self._events.append(Beep(start_s=run[0], end_s=end, freq_hz=run[1]))
            self._beep_reported = True
            self._tone = None
            return
        self._tone = None if tone is None else (t_s - frame_s, tone[0], tone[1], 1)


def _tone_of(ulaw_frame: bytes, buf: NDArray[np.float32]) -> tuple[float, float, float] | None:
    """(peak frequency Hz, band level dB, peak's share of band energy) of one frame, or None."""
    np.take(_ULAW_F32, np.frombuffer(ulaw_frame, dtype=np.uint8), out=buf)
    buf *= _WINDOW
    power = np.abs(np.fft.rfft(buf, FFT_SIZE)) ** 2
    band = power[_BAND_LO:_BAND_HI]
    total = float(band.sum())
    if total <= 0.0:
        return None
    k = int(np.argmax(band))
    if k == 0 or k == len(band) - 1:
        return None
    peak = float(band[max(0, k - 2) : k + 3].sum())
    left, mid, right = float(band[k - 1]), float(band[k]), float(band[k + 1])
    denom = left - 2.0 * mid + right
    offset = 0.5 * (left - right) / denom if denom else 0.0  # parabolic peak interpolation
    freq = (_BAND_LO + k + offset) * BIN_HZ
    # Hann window power sum is 3/8 of N; scale the band energy back to a per-sample level
    level_db = 10.0 * math.log10(2.0 * total / (FFT_SIZE * FRAME_SAMPLES * 0.375) + 1.0)
    return freq, level_db, peak / total
