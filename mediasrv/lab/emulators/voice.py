"""A deterministic synthetic voice: speech-like audio whose timing follows the text.

The ElevenLabs emulator needs audio that exercises the real pipeline (VAD, codecs, pacing,
echo/barge-in tests), so it does not send silence or a steady tone. This module renders a
crude vocoder voice instead:

* **Timing follows the text**: every character gets a duration (letters ~62 ms, spaces a short
  gap, clause and sentence punctuation longer pauses), about 14-16 characters per second, so a
  reply's audio length tracks its text the way real TTS does. ``char_durations_ms`` is also the
  source of the emulator's alignment data.
* **Source**: a harmonic (glottal-pulse-like) series on a 100-200 Hz pitch contour with a
  spectral tilt; fricative letters add filtered noise.
* **Filter**: each harmonic is weighted by three formant resonances chosen per letter (vowels
  get distinct F1/F2, consonants a neutral shape), smoothed over ~12 ms to avoid clicks.
* **Prosody**: a ~4.5 Hz syllable envelope and a slow pitch drift.

Rules: the output depends only on (text, sample rate) — the noise generator is seeded from a
CRC of the text — so tests can compare runs. numpy is used here (not only in ``codec/``)
because the emulator is a test peer, never on the call's audio path.
"""

from __future__ import annotations

import zlib
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["char_durations_ms", "render_pcm", "render_text_ms"]

LETTER_MS: Final = 62
SPACE_MS: Final = 40
CLAUSE_PAUSE_MS: Final = 160
SENTENCE_PAUSE_MS: Final = 260
OTHER_MS: Final = 30
SYLLABLE_HZ: Final = 4.5
MAX_HARMONICS: Final = 30
PEAK: Final = 14000.0

_VOWEL_FORMANTS: Final[dict[str, tuple[float, float, float]]] = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (300.0, 2200.0, 2950.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (330.0, 1020.0, 2240.0),
    "y": (400.0, 1900.0, 2600.0),
}
_NEUTRAL: Final = (500.0, 1500.0, 2500.0)
_VOICED_CONSONANTS: Final = frozenset("bdgjlmnrvwz")
_FRICATIVES: Final = frozenset("cfhkpqstx")
_BANDWIDTHS: Final = (90.0, 130.0, 200.0)


def char_durations_ms(text: str) -> list[int]:
    """Duration of each character of ``text`` in ms (the emulator's alignment timing)."""
    out = []
    for ch in text:
        if ch.isalnum():
            out.append(LETTER_MS)
        elif ch.isspace():
            out.append(SPACE_MS)
        elif ch in ",;:":
            out.append(CLAUSE_PAUSE_MS)
        elif ch in ".!?":
            out.append(SENTENCE_PAUSE_MS)
        else:
            out.append(OTHER_MS)
    return out


def render_text_ms(text: str) -> int:
    """Total audio duration (ms) ``render_pcm`` produces for ``text``."""
    return sum(char_durations_ms(text))


def _char_params(ch: str) -> tuple[float, float, tuple[float, float, float]]:
    """(voiced amplitude, noise amplitude, formants) for one character."""
    c = ch.lower()
    if c in _VOWEL_FORMANTS:
        return 1.0, 0.0, _VOWEL_FORMANTS[c]
    if c.isdigit():
        return 1.0, 0.0, _VOWEL_FORMANTS["a"]
    if c in _VOICED_CONSONANTS:
        return 0.55, 0.03, _NEUTRAL
    if c in _FRICATIVES or c.isalpha():
        return 0.08, 0.35, _NEUTRAL
    return 0.0, 0.0, _NEUTRAL


def _smooth(values: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """Moving average over ``width`` samples (cumulative sum: O(n) at any rate)."""
    if width <= 1 or values.size == 0:
        return values
    padded = np.concatenate([np.full(width // 2, values[0]), values, np.full(width - width // 2, values[-1])])
    csum = np.cumsum(padded)
    out: NDArray[np.float64] = (csum[width:] - csum[:-width])[: values.size] / width
    return out


def render_pcm(text: str, rate_hz: int) -> NDArray[np.int16]:
    """Render ``text`` as mono int16 PCM at ``rate_hz``.

    Args:
        text: the text being "spoken"; its characters set the timing (``char_durations_ms``).
        rate_hz: output sample rate (8000-48000).

    Returns:
        ``round(render_text_ms(text) * rate_hz / 1000)`` samples.
    """
    durations = char_durations_ms(text)
    bounds = np.round(np.cumsum([0, *durations]) * rate_hz / 1000.0).astype(np.int64)
    n = int(bounds[-1])
    if n == 0:
        return np.zeros(0, dtype=np.int16)
    counts = np.diff(bounds)
    params = [_char_params(ch) for ch in text]
    voiced = np.repeat(np.array([p[0] for p in params]), counts)
    noisy = np.repeat(np.array([p[1] for p in params]), counts)
    formants = [np.repeat(np.array([p[2][i] for p in params]), counts) for i in range(3)]
    width = max(1, rate_hz * 12 // 1000)
    voiced, noisy = _smooth(voiced, width), _smooth(noisy, width)
    formants = [_smooth(f, width * 2) for f in formants]

    seed = zlib.crc32(text.encode("utf-8"))
    t = np.arange(n) / rate_hz
    base_f0 = 110.0 + (seed % 50)
    f0 = base_f0 * (1.0 + 0.12 * np.sin(2 * np.pi * 0.7 * t + (seed % 7)) - 0.05 * t / max(t[-1], 1e-9))
    phase = 2 * np.pi * np.cumsum(f0) / rate_hz
    harmonics = int(min(MAX_HARMONICS, (rate_hz / 2 - 300) // (base_f0 * 1.15)))
    # Formant gains change slowly: evaluate them once per millisecond, then hold.
    step = max(1, rate_hz // 1000)
    f0_ms = f0[::step]
    formants_ms = [f[::step] for f in formants]
    source = np.zeros(n)
    rotor = np.exp(1j * phase)  # harmonic k is Im(rotor**k): one complex multiply per harmonic
    power = np.ones(n, dtype=np.complex128)
    for k in range(1, harmonics + 1):
        power *= rotor
        freq = k * f0_ms
        gain_ms = sum(
            1.0 / (1.0 + ((freq - f) / bw) ** 2) for f, bw in zip(formants_ms, _BANDWIDTHS, strict=True)
        )
        gain = np.repeat(gain_ms, step)[:n]
        source += gain * k**-0.6 * power.imag
    syllable = 0.35 + 0.65 * 0.5 * (1.0 - np.cos(2 * np.pi * SYLLABLE_HZ * t))
    noise = np.random.default_rng(seed).standard_normal(n)
    noise = np.diff(noise, prepend=0.0)  # first difference: a crude high-pass, fricative-like
    signal = voiced * syllable * source + noisy * noise
    peak = float(np.max(np.abs(signal))) or 1.0
    return np.round(signal * (PEAK / peak)).astype(np.int16)
