"""Prometheus metrics of the daemon and the one JSON log line per turn.

Theory of operation:

* Every :class:`Metrics` owns its own :class:`prometheus_client.CollectorRegistry`. Nothing is
  registered in the process-wide default registry, so tests, benches and several daemons in one
  process never collide on metric names.
* Latencies are in milliseconds, as in :class:`~mediasrv.timing.TurnSummary`. The histogram
  buckets run from 10 ms to 10 s and include the 600 ms end-to-end target as a bucket edge, so
  ``histogram_quantile`` and "share of turns under target" both read straight off the series.
* The shell feeds it: :meth:`Metrics.call_started` when a media socket is accepted,
  :meth:`Metrics.call_ended` once per call in a ``finally`` (with ``failed=True`` if the call
  raised), :meth:`Metrics.observe_turn` with each turn's summary, :meth:`Metrics.reconnect` when a
  provider client reconnects, :meth:`Metrics.frame_dropped` when a per-frame step of a call
  raised and the call went on without it. Nothing here reads a clock or does I/O.

Exported series:

=============================================  =========  =============================================
name                                           type       meaning
=============================================  =========  =============================================
``mediasrv_turn_stage_ms{stage}``              histogram  each turn stage (``eot``, ``stt_final``, ...)
``mediasrv_turn_e2e_ms``                       histogram  end of caller speech -> first agent frame
``mediasrv_calls_total``                       counter    media calls accepted
``mediasrv_calls_failed_total``                counter    calls that ended with an exception
``mediasrv_active_calls``                      gauge      calls in progress
``mediasrv_webhooks_total``                    counter    Call Control webhooks received
``mediasrv_media_frames_in_total``             counter    media frames received from Telnyx
``mediasrv_media_frames_out_total``            counter    media frames sent to Telnyx
``mediasrv_media_frames_malformed_total``      counter    malformed or unknown frames from Telnyx
``mediasrv_frames_late_total``                 counter    pacer polls that came late
``mediasrv_provider_reconnects_total{provider}`` counter  provider client reconnects
``mediasrv_provider_errors_total{provider,code}`` counter  providers that refused a call's session
``mediasrv_speculative_total{result}``         counter    speculative replies: hit, miss, cancelled
``mediasrv_barge_ins_total``                   counter    turns the caller interrupted
``mediasrv_frames_dropped_total{stage}``       counter    inbound frames a per-frame step raised on
=============================================  =========  =============================================
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mediasrv.timing import TurnSummary

__all__ = [
    "FRAME_STAGES",
    "LATENCY_BUCKETS_MS",
    "SPECULATIVE_RESULTS",
    "STAGE_FIELDS",
    "TURN_LOG_KEYS",
    "FrameStage",
    "MediaStats",
    "Metrics",
    "turn_log_line",
]

LATENCY_BUCKETS_MS: Final[tuple[float, ...]] = (
    10.0,
    20.0,
    30.0,
    50.0,
    75.0,
    100.0,
    150.0,
    200.0,
    250.0,
    300.0,
    400.0,
    500.0,
    600.0,
    700.0,
    800.0,
    1000.0,
    1250.0,
    1500.0,
    2000.0,
    2500.0,
    3000.0,
    4000.0,
    5000.0,
    7500.0,
    10000.0,
)
"""Histogram bucket edges in ms: dense around the 500-700 ms target, sparse out to 10 s."""

STAGE_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("eot", "eot_ms"),
    ("stt_final", "stt_final_ms"),
    ("llm_ttft", "llm_ttft_ms"),
    ("llm_total", "llm_total_ms"),
    ("tts_ttfb", "tts_ttfb_ms"),
    ("tts_total", "tts_total_ms"),
    ("playback", "playback_ms"),
    ("extraction", "extraction_ms"),
)
"""``stage`` label value -> :class:`TurnSummary` field, for the per-stage histogram."""

SPECULATIVE_RESULTS: Final[tuple[str, ...]] = ("hit", "miss", "cancelled")

FrameStage = Literal["vad", "echo", "turns"]
FRAME_STAGES: Final[tuple[FrameStage, ...]] = ("vad", "echo", "turns")
"""Per-frame steps of a call whose failures are counted (``stage`` of ``mediasrv_frames_dropped``)."""

TURN_LOG_KEYS: Final[tuple[str, ...]] = (
    "event",
    "call_id",
    "turn",
    "profile",
    "speculative",
    "barge_in",
    "eot_ms",
    "stt_final_ms",
    "llm_ttft_ms",
    "llm_total_ms",
    "tts_ttfb_ms",
    "tts_total_ms",
    "playback_ms",
    "extraction_ms",
    "first_frame_ms",
    "llm_requests",
    "side_requests",
    "text",
    "reply",
)
"""The keys of :func:`turn_log_line`, always all present and in this order."""


class MediaStats(Protocol):
    """The per-call counters :meth:`Metrics.call_ended` reads (``mediasrv.call.CallStats`` fits)."""

    @property
    def frames_in(self) -> int: ...
    @property
    def frames_out(self) -> int: ...
    @property
    def malformed(self) -> int: ...
    @property
    def late_frames(self) -> int: ...


class Metrics:
    """The daemon's Prometheus series, in a registry of their own.

    Args:
        registry: the registry to register into; a fresh one if None (the usual case).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turn_stage_ms = Histogram(
            "mediasrv_turn_stage_ms",
            "Duration of each turn stage in milliseconds.",
            ["stage"],
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.turn_e2e_ms = Histogram(
            "mediasrv_turn_e2e_ms",
            "End of the caller's speech to the first agent frame sent to Telnyx, in milliseconds.",
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.calls = Counter("mediasrv_calls", "Media calls accepted.", registry=r)
        self.calls_failed = Counter(
            "mediasrv_calls_failed", "Calls that ended with an exception.", registry=r
        )
        self.active_calls = Gauge("mediasrv_active_calls", "Calls in progress.", registry=r)
        self.webhooks = Counter("mediasrv_webhooks", "Call Control webhooks received.", registry=r)
        self.frames_in = Counter("mediasrv_media_frames_in", "Media frames received from Telnyx.", registry=r)
        self.frames_out = Counter("mediasrv_media_frames_out", "Media frames sent to Telnyx.", registry=r)
        self.frames_malformed = Counter(
            "mediasrv_media_frames_malformed", "Malformed or unknown frames received from Telnyx.", registry=r
        )
        self.frames_late = Counter(
            "mediasrv_frames_late", "Pacer polls that came later than due.", registry=r
        )
        self.reconnects = Counter(
            "mediasrv_provider_reconnects", "Provider client reconnects.", ["provider"], registry=r
        )
        self.provider_errors = Counter(
            "mediasrv_provider_errors",
            "Providers that refused a call's session (bad model, key or config): the fallback line played.",
            ["provider", "code"],
            registry=r,
        )
        self.speculative = Counter(
            "mediasrv_speculative", "Speculative replies by outcome.", ["result"], registry=r
        )
        self.barge_ins = Counter("mediasrv_barge_ins", "Turns the caller interrupted.", registry=r)
        self.llm_requests = Counter(
            "mediasrv_llm_requests",
            "LLM requests made for turns: reply streams (speculative restarts included) and side calls.",
            ["kind"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "mediasrv_frames_dropped",
            "Inbound frames a per-frame step (vad, echo, turns) raised on; the call went on without it.",
            ["stage"],
            registry=r,
        )
        # Export the labelled series at zero from the start, so dashboards see them before the first event.
        for result in SPECULATIVE_RESULTS:
            self.speculative.labels(result=result)
        for stage, _ in STAGE_FIELDS:
            self.turn_stage_ms.labels(stage=stage)
        for kind in ("reply", "side"):
            self.llm_requests.labels(kind=kind)
        for stage in FRAME_STAGES:
            self.frames_dropped.labels(stage=stage)

    def call_started(self) -> None:
        """A media call was accepted."""
        self.calls.inc()
        self.active_calls.inc()

    def call_ended(
        self,
        stats: MediaStats | None = None,
        *,
        failed: bool = False,
        frames_in: int = 0,
        frames_out: int = 0,
        malformed: int = 0,
        late_frames: int = 0,
    ) -> None:
        """A media call ended (call it exactly once per :meth:`call_started`, in a ``finally``).

        Args:
            stats: the call's counters, if the call got far enough to have them; they add to
                the keyword counts.
            failed: the call ended with an exception.
            frames_in: media frames received.
            frames_out: media frames sent.
            malformed: malformed or unknown frames received.
            late_frames: pacer polls that came late.
        """
        if stats is not None:
            frames_in += stats.frames_in
            frames_out += stats.frames_out
            malformed += stats.malformed
            late_frames += stats.late_frames
        self.active_calls.dec()
        if failed:
            self.calls_failed.inc()
        self.frames_in.inc(frames_in)
        self.frames_out.inc(frames_out)
        self.frames_malformed.inc(malformed)
        self.frames_late.inc(late_frames)

    def webhook(self) -> None:
        """A Call Control webhook was received."""
        self.webhooks.inc()

    def reconnect(self, provider: str) -> None:
        """A provider client (``soniox``, ``elevenlabs``, ``openai``...) reconnected."""
        self.reconnects.labels(provider=provider).inc()

    def provider_error(self, provider: str, code: str) -> None:
        """A provider (``soniox``, ``elevenlabs``, ``openai``...) refused a call's session with ``code``."""
        self.provider_errors.labels(provider=provider, code=code).inc()

    def frame_dropped(self, stage: FrameStage) -> None:
        """A per-frame step of a call raised on one inbound frame; the call went on without it."""
        self.frames_dropped.labels(stage=stage).inc()

    def speculative_result(self, result: str) -> None:
        """Count a speculative reply outcome (``hit``, ``miss`` or ``cancelled``).

        Raises:
            ValueError: for any other outcome (label values stay a closed set).
        """
        if result not in SPECULATIVE_RESULTS:
            raise ValueError(f"unknown speculative result {result!r}")
        self.speculative.labels(result=result).inc()

    def observe_turn(self, summary: TurnSummary) -> None:
        """Record one finished turn: every stage it has, its end-to-end figure, its outcomes.

        Stages that did not happen (None) are not observed, so a partial turn never shows up
        as a zero latency.
        """
        for stage, field in STAGE_FIELDS:
            value = getattr(summary, field)
            if value is not None:
                self.turn_stage_ms.labels(stage=stage).observe(value)
        if summary.first_frame_ms is not None:
            self.turn_e2e_ms.observe(summary.first_frame_ms)
        if summary.speculative is not None:
            self.speculative_result(summary.speculative)
        if summary.barge_in:
            self.barge_ins.inc()
        if summary.llm_requests:
            self.llm_requests.labels(kind="reply").inc(summary.llm_requests)
        if summary.side_requests:
            self.llm_requests.labels(kind="side").inc(summary.side_requests)

    def count(self, name: str, **labels: str) -> int:
        """The current value of one counter or gauge sample, e.g. ``count("mediasrv_calls_total")``.

        For readers (the daemon's counter views, tests); it walks the registry, so keep it off
        the media path. A labelled series not seen yet reads as 0.
        """
        value = self.registry.get_sample_value(name, labels)
        return 0 if value is None else int(value)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for the ``/metrics`` route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def turn_log_line(summary: TurnSummary, *, profile: str | None = None) -> str:
    """The one structured JSON log line of a turn (no trailing newline).

    Every key of :data:`TURN_LOG_KEYS` is present, in that order, with ``null`` for a stage that
    did not happen, so log pipelines and ``mediasrv report`` see the same shape on every line.

    Args:
        summary: the turn's figures.
        profile: the latency profile or deployment label to tag the line with, if any.
    """
    record: dict[str, object] = {
        "event": "turn",
        "call_id": summary.call_id,
        "turn": summary.turn,
        "profile": profile,
        "speculative": summary.speculative,
        "barge_in": summary.barge_in,
        "eot_ms": summary.eot_ms,
        "stt_final_ms": summary.stt_final_ms,
        "llm_ttft_ms": summary.llm_ttft_ms,
        "llm_total_ms": summary.llm_total_ms,
        "tts_ttfb_ms": summary.tts_ttfb_ms,
        "tts_total_ms": summary.tts_total_ms,
        "playback_ms": summary.playback_ms,
        "extraction_ms": summary.extraction_ms,
        "first_frame_ms": summary.first_frame_ms,
        "llm_requests": summary.llm_requests,
        "side_requests": summary.side_requests,
        "text": summary.text,
        "reply": summary.reply,
    }
    return orjson.dumps(record).decode()
