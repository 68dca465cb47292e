"""Named latency profiles shared by the emulators, the demo and the latency lab.

Figures come from the platform's own measurements (README, "Latency profiles": fast, typical, slow).
A profile is plain data: emulators read it to shape their timing, benches print it.
"""

from __future__ import annotations

from typing import Final

import msgspec


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Latency model of the remote services for one named profile (all times in ms)."""

    name: str
    stt_endpoint_silence_ms: int
    """Soniox: silence (measured on received audio) before it emits ``<end>``."""
    stt_partial_lag_ms: int
    """Soniox: how far behind the received audio its non-final tokens run."""
    stt_finalize_ms: int
    """Soniox: time from ``finalize`` to the ``<fin>`` answer."""
    llm_ttft_ms: int
    llm_tokens_per_s: float
    extraction_ms: int | None
    """A separate variable-extraction LLM call (None: the legacy platform did not make it)."""
    transition_ms: int | None
    tts_ttfb_ms: int
    tts_chunk_ms: int
    """ElevenLabs: audio per chunk it sends."""
    tts_realtime_factor: float
    """ElevenLabs: how many times faster than real time the audio is produced after TTFB."""
    jitter_ms: int
    """Uniform +- jitter applied to every modelled delay."""


PROFILES: Final[dict[str, Profile]] = {
    "fast": Profile(
        name="fast",
        stt_endpoint_silence_ms=300,
        stt_partial_lag_ms=60,
        stt_finalize_ms=40,
        llm_ttft_ms=250,
        llm_tokens_per_s=70.0,
        extraction_ms=None,
        transition_ms=None,
        tts_ttfb_ms=180,
        tts_chunk_ms=100,
        tts_realtime_factor=4.0,
        jitter_ms=10,
    ),
    "typical": Profile(
        name="typical",
        stt_endpoint_silence_ms=600,
        stt_partial_lag_ms=120,
        stt_finalize_ms=80,
        llm_ttft_ms=500,
        llm_tokens_per_s=40.0,
        extraction_ms=800,
        transition_ms=700,
        tts_ttfb_ms=220,
        tts_chunk_ms=200,
        tts_realtime_factor=3.0,
        jitter_ms=20,
    ),
    "slow": Profile(
        name="slow",
        stt_endpoint_silence_ms=1000,
        stt_partial_lag_ms=200,
        stt_finalize_ms=150,
        llm_ttft_ms=800,
        llm_tokens_per_s=30.0,
        extraction_ms=1500,
        transition_ms=1000,
        tts_ttfb_ms=300,
        tts_chunk_ms=250,
        tts_realtime_factor=2.0,
        jitter_ms=40,
    ),
}


def instant_profile(name: str = "instant", **changes: object) -> Profile:
    """A profile with no modelled delay at all; ``changes`` set the few figures a test times.

    Audio comes in 20 ms chunks at real time (the smallest shape the emulators accept).
    """
    base = Profile(
        name=name,
        stt_endpoint_silence_ms=0,
        stt_partial_lag_ms=0,
        stt_finalize_ms=0,
        llm_ttft_ms=0,
        llm_tokens_per_s=0.0,
        extraction_ms=None,
        transition_ms=None,
        tts_ttfb_ms=0,
        tts_chunk_ms=20,
        tts_realtime_factor=1.0,
        jitter_ms=0,
    )
    return msgspec.structs.replace(base, **changes)


def get_profile(name: str) -> Profile:
    """Return the named profile.

    Raises:
        ConfigError: the name is not one of ``fast``, ``typical``, ``slow``.
    """
    from mediasrv.errors import ConfigError

    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"profile: unknown profile {name!r}; expected one of {sorted(PROFILES)}") from None
