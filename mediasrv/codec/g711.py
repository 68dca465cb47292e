"""G.711 mu-law and A-law as lookup tables (numpy).

Theory of operation
-------------------
G.711 maps each 16-bit linear sample to one 8-bit code: a sign bit, a 3-bit segment
(which power-of-two range the magnitude falls in) and a 4-bit mantissa (the position
inside that segment). Mu-law works on the top 14 bits of the sample, A-law on the top
13 bits, and both store their codes with bits inverted (mu-law: all bits; A-law: the
even bits, ``0x55``) so that silence does not become a run of zero bytes on the line.

Rather than repeat that bit work per sample, this module evaluates it once, at import,
for every possible input:

* decode: a 256-entry ``int16`` table indexed by the code byte;
* encode: a 65,536-entry ``uint8`` table indexed by the sample's bit pattern, i.e. the
  int16 data viewed as ``uint16`` (``-1`` is index ``0xFFFF``).

A frame then costs one ``np.frombuffer`` and one ``take`` (faster than fancy indexing
for these small index arrays), with no Python loop per sample. The tables are bit-exact
with the stdlib ``audioop`` (``lin2ulaw``, ``ulaw2lin``, ``lin2alaw``, ``alaw2lin`` at
width 2), which follows the ITU-T G.711 reference code (Sun's ``g711.c``);
``tests/core/test_codec.py`` checks all 65,536 + 256 entries.

One exception, for speed: the byte-to-byte *decoders* call ``audioop.ulaw2lin``/``alaw2lin``
when ``audioop`` is importable (the stdlib on 3.11-3.12, the ``audioop-lts`` dependency on
3.13+). On a 160-byte frame numpy's fixed per-call overhead makes the table lookup ~1.3 us
against ~0.3 us for audioop's C loop, and the inbound media path has a 1 us budget. Both
give identical bytes (the tests compare them); the tables remain the array-level API.

PCM here is always signed 16-bit little-endian mono (Telnyx and ElevenLabs both send
that), the same layout ``audioop`` assumes on the machines we run on.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mediasrv.errors import CodecError

__all__ = [
    "ALAW_DECODE_TABLE",
    "ALAW_ENCODE_TABLE",
    "SAMPLE_RATE_HZ",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_array",
    "array_to_alaw",
    "array_to_ulaw",
    "check_pcm16",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_array",
]

SAMPLE_RATE_HZ: Final = 8000
"""G.711 is defined at 8 kHz; one code byte per sample."""

# Segment layout shared by both laws: 3-bit segment number, 4-bit mantissa.
_SEG_SHIFT: Final = 4
_QUANT_MASK: Final = 0x0F
_SEG_MASK: Final = 0x70
_SIGN_BIT: Final = 0x80

# Mu-law: the bias added before the segment search (0x84 on the 16-bit scale, 33 on the
# 14-bit scale the encoder works in) and the largest 14-bit magnitude that still encodes.
_ULAW_BIAS_16: Final = 0x84
_ULAW_BIAS_14: Final = _ULAW_BIAS_16 >> 2
_ULAW_CLIP_14: Final = 8159


def _segment(magnitude: NDArray[np.int32], segment0_end: int) -> NDArray[np.int32]:
    """Segment number (0..7) holding each magnitude; 8 means beyond the last segment.

    Segment ``s`` covers magnitudes up to ``((segment0_end + 1) << s) - 1`` inclusive.
    """
    ends = ((segment0_end + 1) << np.arange(8, dtype=np.int32)) - 1
    return np.searchsorted(ends, magnitude, side="left").astype(np.int32)


def _build_ulaw_decode() -> NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    step = ((code & _QUANT_MASK) << 3) + _ULAW_BIAS_16
    step <<= (code & _SEG_MASK) >> _SEG_SHIFT
    linear = np.where(code & _SIGN_BIT, _ULAW_BIAS_16 - step, step - _ULAW_BIAS_16)
    return linear.astype(np.int16)


def _build_ulaw_encode() -> NDArray[np.uint8]:
    sample = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    value = sample >> 2  # the 14-bit input G.711 mu-law is specified on (floor shift)
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), _ULAW_CLIP_14) + _ULAW_BIAS_14
    # Segment ends 0x3F, 0x7F, ..., 0x1FFF.
    segment = _segment(magnitude, 0x3F)
    code = (segment << _SEG_SHIFT) | ((magnitude >> (segment + 1)) & _QUANT_MASK)
    saturated = np.where(segment >= 8, 0x7F, code)
    return (saturated ^ mask).astype(np.uint8)


def _build_alaw_decode() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = (code & _QUANT_MASK) << 4
    segment = (code & _SEG_MASK) >> _SEG_SHIFT
    magnitude = np.where(
        segment == 0,
        mantissa + 8,
        (mantissa + 0x108) << np.maximum(segment - 1, 0),
    )
    return np.where(code & _SIGN_BIT, magnitude, -magnitude).astype(np.int16)


def _build_alaw_encode() -> NDArray[np.uint8]:
    sample = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    value = sample >> 3  # the 13-bit input G.711 A-law is specified on (floor shift)
    is_negative = value < 0
    mask = np.where(is_negative, 0x55, 0xD5)
    magnitude = np.where(is_negative, -value - 1, value)
    # Segment ends 0x1F, 0x3F, ..., 0xFFF.
    segment = _segment(magnitude, 0x1F)
    shift = np.where(segment < 2, 1, segment)
    code = (segment << _SEG_SHIFT) | ((magnitude >> shift) & _QUANT_MASK)
    saturated = np.where(segment >= 8, 0x7F, code)
    return (saturated ^ mask).astype(np.uint8)


def _frozen(table: NDArray[np.generic]) -> None:
    table.setflags(write=False)


ULAW_DECODE_TABLE: Final[NDArray[np.int16]] = _build_ulaw_decode()
"""Mu-law code (0..255) -> int16 sample."""
ULAW_ENCODE_TABLE: Final[NDArray[np.uint8]] = _build_ulaw_encode()
"""int16 sample viewed as uint16 (0..65535) -> mu-law code."""
ALAW_DECODE_TABLE: Final[NDArray[np.int16]] = _build_alaw_decode()
"""A-law code (0..255) -> int16 sample."""
ALAW_ENCODE_TABLE: Final[NDArray[np.uint8]] = _build_alaw_encode()
"""int16 sample viewed as uint16 (0..65535) -> A-law code."""
for _table in (ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE, ALAW_DECODE_TABLE, ALAW_ENCODE_TABLE):
    _frozen(_table)
del _table


def check_pcm16(pcm16: bytes) -> None:
    """Raise unless ``pcm16`` holds a whole number of 16-bit samples.

    Args:
        pcm16: signed 16-bit little-endian mono PCM.

    Raises:
        CodecError: the byte length is odd (a sample was split).
    """
    if len(pcm16) & 1:
        raise CodecError(f"pcm16 must hold whole 16-bit samples, got an odd length of {len(pcm16)} bytes")


def _check_int16(pcm: NDArray[np.generic]) -> None:
    if pcm.dtype != np.int16:
        raise CodecError(f"G.711 encodes int16 samples, got an array of {pcm.dtype}")


def ulaw_to_array(ulaw: bytes) -> NDArray[np.int16]:
    """Decode mu-law bytes to a new int16 array (one sample per byte)."""
    return ULAW_DECODE_TABLE.take(np.frombuffer(ulaw, np.uint8))


def alaw_to_array(alaw: bytes) -> NDArray[np.int16]:
    """Decode A-law bytes to a new int16 array (one sample per byte)."""
    return ALAW_DECODE_TABLE.take(np.frombuffer(alaw, np.uint8))


def array_to_ulaw(pcm: NDArray[np.int16]) -> bytes:
    """Encode an int16 array to mu-law bytes (one byte per sample).

    Raises:
        CodecError: ``pcm`` is not int16.
    """
    _check_int16(pcm)
    return ULAW_ENCODE_TABLE.take(pcm.view(np.uint16)).tobytes()


def array_to_alaw(pcm: NDArray[np.int16]) -> bytes:
    """Encode an int16 array to A-law bytes (one byte per sample).

    Raises:
        CodecError: ``pcm`` is not int16.
    """
    _check_int16(pcm)
    return ALAW_ENCODE_TABLE.take(pcm.view(np.uint16)).tobytes()


def _load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # pragma: no cover - a dependency on every supported Python
            return None
    return audioop


_AUDIOOP: Final = _load_audioop()


def ulaw_decode(ulaw: bytes) -> bytes:
    """Decode G.711 mu-law to PCM, like ``audioop.ulaw2lin(ulaw, 2)``.

    Args:
        ulaw: mu-law codes, one byte per sample (e.g. 160 bytes per 20 ms Telnyx frame).

    Returns:
        Signed 16-bit little-endian PCM, two bytes per input byte.
    """
    if _AUDIOOP is not None:
        return _AUDIOOP.ulaw2lin(ulaw, 2)  # type: ignore[no-any-return]
    return ULAW_DECODE_TABLE.take(np.frombuffer(ulaw, np.uint8)).tobytes()


def alaw_decode(alaw: bytes) -> bytes:
    """Decode G.711 A-law to PCM, like ``audioop.alaw2lin(alaw, 2)``.

    Args:
        alaw: A-law codes, one byte per sample.

    Returns:
        Signed 16-bit little-endian PCM, two bytes per input byte.
    """
    if _AUDIOOP is not None:
        return _AUDIOOP.alaw2lin(alaw, 2)  # type: ignore[no-any-return]
    return ALAW_DECODE_TABLE.take(np.frombuffer(alaw, np.uint8)).tobytes()


def ulaw_encode(pcm16: bytes) -> bytes:
    """Encode PCM to G.711 mu-law, like ``audioop.lin2ulaw(pcm16, 2)``.

    No resampling happens here: ``pcm16`` must already be at 8 kHz for the phone line
    (use ``UlawEncoder`` to convert from a TTS rate).

    Args:
        pcm16: signed 16-bit little-endian mono PCM.

    Returns:
        One mu-law byte per sample.

    Raises:
        CodecError: ``pcm16`` has an odd byte length.
    """
    if len(pcm16) & 1:
        check_pcm16(pcm16)
    return ULAW_ENCODE_TABLE.take(np.frombuffer(pcm16, np.uint16)).tobytes()


def alaw_encode(pcm16: bytes) -> bytes:
    """Encode PCM to G.711 A-law, like ``audioop.lin2alaw(pcm16, 2)``.

    Args:
        pcm16: signed 16-bit little-endian mono PCM.

    Returns:
        One A-law byte per sample.

    Raises:
        CodecError: ``pcm16`` has an odd byte length.
    """
    if len(pcm16) & 1:
        check_pcm16(pcm16)
    return ALAW_ENCODE_TABLE.take(np.frombuffer(pcm16, np.uint16)).tobytes()
