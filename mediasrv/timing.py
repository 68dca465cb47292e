"""Per-turn timelines: monotonic stamps for every stage of a turn, and their summary.

A :class:`TurnTimeline` is filled by the call shell as a turn progresses (``stamp(name, t)``
with the loop's monotonic clock, in seconds). Nothing here reads a clock: the caller passes
the time. :meth:`TurnTimeline.summary` turns the stamps into the stage durations the
platform wanted logged, in milliseconds, relative to the end of the caller's speech:

=================  ==========================================================
stage              meaning
=================  ==========================================================
``vad_end``        local VAD saw the caller stop (end of the last speech frame)
``eot``            the turn detector declared the end of turn (commit)
``stt_final``      the final transcript was complete (Soniox ``<end>``/``<fin>``)
``llm_start``      the reply's LLM request was sent (speculative or not)
``llm_ttft``       its first token arrived
``llm_done``       its stream ended
``tts_first_text`` the first clause went to the TTS context
``tts_ttfb``       the first audio chunk came back
``tts_done``       the TTS context's last audio came back
``first_frame``    the first agent frame was sent to Telnyx
``extraction``     the side extraction / transition call finished (if any)
=================  ==========================================================

Beside the stamps a timeline counts what the turn cost: ``llm_requests``, the reply streams
opened for it (a speculation restarted on fresher words or dropped when the caller went on
counts each time; 1 means no churn), and ``side_requests``, the extraction / transition calls.
"""

from __future__ import annotations

from typing import Final

import msgspec

STAGES: Final = (
    "speech_end",
    "vad_end",
    "user_paused",
    "eot",
    "stt_final",
    "llm_start",
    "llm_ttft",
    "llm_done",
    "tts_first_text",
    "tts_ttfb",
    "tts_done",
    "first_frame",
    "extraction_done",
)


class TurnSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One turn's figures in milliseconds (None: that stage did not happen)."""

    call_id: str
    turn: int
    profile: str | None = None
    """The emulators' latency profile, when the run used them (groups the report's curves)."""
    text: str = ""
    reply: str = ""
    speculative: str | None = None
    """``hit`` (the speculative reply was kept), ``miss`` (restarted) or None."""
    barge_in: bool = False
    eot_ms: float | None = None
    """End of caller speech -> end-of-turn decision (dead air before any work can start)."""
    stt_final_ms: float | None = None
    llm_ttft_ms: float | None = None
    """LLM request -> first token."""
    llm_total_ms: float | None = None
    tts_ttfb_ms: float | None = None
    """First text to TTS -> first audio chunk back."""
    tts_total_ms: float | None = None
    """First text to TTS -> its last audio chunk back."""
    playback_ms: float | None = None
    """Playback start: audio in hand and the turn ended (the later of ``tts_ttfb`` and ``eot``)
    -> first agent frame sent. The old platform's REST playback step; here the pacer's send."""
    extraction_ms: float | None = None
    first_frame_ms: float | None = None
    """End of caller speech -> first agent frame sent to Telnyx (the end-to-end figure)."""
    llm_requests: int = 0
    """Reply LLM streams opened for this turn, speculative ones included (churn = this - 1)."""
    side_requests: int = 0
    """Side LLM calls (extraction / transition) made for this turn."""


class TurnTimeline:
    """Stamps of one turn, in loop-monotonic seconds.

    Args:
        call_id: the call this turn belongs to.
        turn: its index in the call (0 = greeting).
    """

    __slots__ = (
        "call_id",
        "turn",
        "stamps",
        "text",
        "reply",
        "speculative",
        "barge_in",
        "llm_requests",
        "side_requests",
    )

    def __init__(self, call_id: str, turn: int) -> None:
        self.call_id = call_id
        self.turn = turn
        self.stamps: dict[str, float] = {}
        self.text = ""
        self.reply = ""
        self.speculative: str | None = None
        self.barge_in = False
        self.llm_requests = 0
        self.side_requests = 0

    def stamp(self, stage: str, t: float, *, overwrite: bool = False) -> None:
        """Record ``stage`` at time ``t`` (the first stamp wins unless ``overwrite``)."""
        if overwrite or stage not in self.stamps:
            self.stamps[stage] = t

    def get(self, stage: str) -> float | None:
        """The stamp of ``stage``, if it happened."""
        return self.stamps.get(stage)

    def _span(self, a: str, b: str) -> float | None:
        ta, tb = self.stamps.get(a), self.stamps.get(b)
        if ta is None or tb is None:
            return None
        return round((tb - ta) * 1000.0, 1)

    def _playback_start(self) -> float | None:
        ttfb, eot = self.stamps.get("tts_ttfb"), self.stamps.get("eot")
        if ttfb is None:
            return None
        return self._span("eot" if eot is not None and eot > ttfb else "tts_ttfb", "first_frame")

    def summary(self) -> TurnSummary:
        """Stage durations in ms; the origin is the end of speech (true if known, else VAD)."""
        origin = "speech_end" if "speech_end" in self.stamps else "vad_end"
        return TurnSummary(
            call_id=self.call_id,
            turn=self.turn,
            text=self.text,
            reply=self.reply,
            speculative=self.speculative,
            barge_in=self.barge_in,
            eot_ms=self._span(origin, "eot"),
            stt_final_ms=self._span(origin, "stt_final"),
            llm_ttft_ms=self._span("llm_start", "llm_ttft"),
            llm_total_ms=self._span("llm_start", "llm_done"),
            tts_ttfb_ms=self._span("tts_first_text", "tts_ttfb"),
            tts_total_ms=self._span("tts_first_text", "tts_done"),
            playback_ms=self._playback_start(),
            extraction_ms=self._span("llm_start", "extraction_done"),
            first_frame_ms=self._span(origin, "first_frame"),
            llm_requests=self.llm_requests,
            side_requests=self.side_requests,
        )


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` (0..100) percentile by linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
