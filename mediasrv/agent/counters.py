"""Per-call agent counters: what happened on one call, counted as it happens.

The runner and its collaborators bump these fields; nothing reads them during the call. At
the end of the call they go into the call record (:class:`~mediasrv.records.CallEnd`), and the
demo, the tests and the benchmarks read them from the runner.
"""

from __future__ import annotations

import msgspec


class CallCounters(msgspec.Struct, kw_only=True):
    """Per-call agent counters."""

    turns: int = 0
    speculative_hits: int = 0
    speculative_misses: int = 0
    speculative_cancelled: int = 0
    barge_ins: int = 0
    false_interruptions: int = 0
    echo_frames: int = 0
    echo_transcripts: int = 0
    stt_failures: int = 0
    llm_failures: int = 0
    llm_requests: int = 0
    """Reply LLM streams opened (speculative ones included); side calls are counted apart."""
    side_calls: int = 0
    side_failures: int = 0
    replaced_replies: int = 0
    webhooks: int = 0
    webhook_failures: int = 0
    greeting_cached: int = 0
    provider_errors: int = 0
    stalled_frames: int = 0
    """Frames the media stream did not send while a turn was open, heard as silence instead."""
    late_frames_dropped: int = 0
    """Frames that came after the time they cover had been heard as silence (a stall's tail)."""
    """Providers that refused the call's session (:mod:`mediasrv.agent.failures`)."""
