"""Synthetic telephone signals for VAD and turn tests (band-limited speech-like sound and noise)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

RATE = 8000
FRAME = 160


def bandlimit(x: NDArray[np.float64], lo_hz: float = 300.0, hi_hz: float = 3400.0) -> NDArray[np.float64]:
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / RATE)
    spec[(freqs < lo_hz) | (freqs > hi_hz)] = 0.0
    return np.fft.irfft(spec, len(x))


def speech_like(seconds: float, rng: np.random.Generator, f0_hz: float = 140.0) -> NDArray[np.float64]:
    """Voiced harmonics with a drifting pitch, formant-ish weights and a 4 Hz syllable envelope."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = f0_hz * (1.0 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = np.zeros_like(t)
    for k in range(1, 25):
        weight = np.exp(-((((k * f0_hz) - 700.0) / 600.0) ** 2)) + 0.4 * np.exp(
            -((((k * f0_hz) - 1800.0) / 500.0) ** 2)
        )
        x += weight * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.15, None) ** 0.5
    return bandlimit(x * envelope)


def white(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    return bandlimit(rng.standard_normal(n))


def pink(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / RATE)
    spec[1:] /= np.sqrt(freqs[1:])
    spec[0] = 0.0
    return bandlimit(np.fft.irfft(spec, n))


def scale_to_db(x: NDArray[np.float64], level_db: float) -> NDArray[np.float64]:
    """Scale to a mean-square level in dB re 1 LSB^2."""
    gain = float(np.sqrt(10 ** (level_db / 10) / np.mean(x**2)))
    return x * gain


def to_int16(x: NDArray[np.float64]) -> NDArray[np.int16]:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def scene(
    noise: NDArray[np.float64], speech: NDArray[np.float64], snr_db: float, start_s: float
) -> NDArray[np.int16]:
    """Noise at 50 dB with ``speech`` added at ``snr_db`` from ``start_s``."""
    noise = scale_to_db(noise, 50.0)
    speech = scale_to_db(speech, 50.0 + snr_db)
    out = noise.copy()
    i = int(start_s * RATE)
    out[i : i + len(speech)] += speech
    return to_int16(out)
