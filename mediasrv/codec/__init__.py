"""G.711 codecs and streaming resampling (numpy); re-exports only."""

from __future__ import annotations

from mediasrv.codec.g711 import (
    ALAW_DECODE_TABLE,
    ALAW_ENCODE_TABLE,
    SAMPLE_RATE_HZ,
    ULAW_DECODE_TABLE,
    ULAW_ENCODE_TABLE,
    alaw_decode,
    alaw_encode,
    alaw_to_array,
    array_to_alaw,
    array_to_ulaw,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_array,
)
from mediasrv.codec.resample import FRAME_MS, Resampler, UlawEncoder, design_lowpass

__all__ = [
    "ALAW_DECODE_TABLE",
    "ALAW_ENCODE_TABLE",
    "FRAME_MS",
    "SAMPLE_RATE_HZ",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "Resampler",
    "UlawEncoder",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_array",
    "array_to_alaw",
    "array_to_ulaw",
    "design_lowpass",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_array",
]
