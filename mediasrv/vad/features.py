"""Per-frame acoustic features of 8 kHz telephone audio, computed for many streams at once.

Theory of operation
-------------------
:class:`FeatureBank` holds the feature state of up to ``capacity`` independent streams (one per
call) in numpy arrays with one row per stream. :meth:`FeatureBank.compute` takes one 20 ms frame
(160 samples) for each of a set of streams and returns one feature vector per stream, updating
only those streams' state, so a daemon can gather whatever frames arrived in a tick and pay the
numpy call overhead once for all of them.

Per frame and stream:

1. **Spectrum.** The last 40 ms (this frame and the one before) under a Hann window, zero-padded
   to 512 points, real FFT: 257 power bins, 15.6 Hz apart.
2. **Band levels.** ``N_BANDS`` triangular mel-spaced bands over ``BAND_LO_HZ``-``BAND_HI_HZ``
   (the telephone band), in dB (int16 scale).
3. **Noise floor per band, by minimum statistics.** The minimum of each band over the last
   ``FLOOR_BLOCKS`` blocks of ``FLOOR_BLOCK_FRAMES`` frames (about 1.3 s): it does not rise
   inside speech (the gaps between syllables are quieter), and a change of line noise is
   followed within the window. Frames under ``DEAD_LINE_DB`` (digital silence: a muted leg, a
   carrier's discontinuous transmission) are no line at all and leave the floor alone, so the
   noise of a line that starts after them is the floor from its first frame.
4. **Voicing.** The autocorrelation of the pre-emphasised windowed frame (inverse FFT of the
   same power spectrum), divided by the window's own autocorrelation, peak over lags of
   2.5-16.7 ms (pitch 60-400 Hz) relative to lag 0. Voiced speech scores 0.4-0.95 even without
   its fundamental (cut by the telephone band); noise scores low.
5. **A slow background level**: an exponential average of the full-band level with a time
   constant of about 2 s. Speech well above it is foreground; a background of other talkers
   sits at it.
6. **A decaying peak level**: the loudest frame level so far, falling ``PEAK_DECAY_DB`` per
   frame (2.5 dB/s). Once the caller has spoken, a background 5-10 dB under their voice (other
   talkers in the room) stays that far under the peak.

The vector (``N_FEATURES`` values, scaled to about unit range): band SNRs over the floor, the
spectral shape (band level minus the frame's mean level), the level change since the last
frame, the voicing, the mean SNR over the floor, the level over the slow background, the level
under the peak, and the peak over the floor (near 0 on a line where nobody has spoken yet).
There is no absolute level (a loud line is not a talking line), and no slow memory of the
caller's level (a caller who turns away from the phone is still the caller).

Rules: no I/O, no clock; state changes only in :meth:`compute` and :meth:`reset`. The first
live frame of a stream initialises its floor, background and peak to that frame's own levels.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from mediasrv.codec import ULAW_DECODE_TABLE

SAMPLE_RATE_HZ: Final = 8000
FRAME_SAMPLES: Final = 160
WINDOW_SAMPLES: Final = 320
NFFT: Final = 512
N_BINS: Final = NFFT // 2 + 1
N_BANDS: Final = 20
BAND_LO_HZ: Final = 150.0
BAND_HI_HZ: Final = 3700.0
PITCH_MIN_HZ: Final = 60.0
PITCH_MAX_HZ: Final = 400.0
PRE_EMPHASIS: Final = 0.9
FLOOR_BLOCK_FRAMES: Final = 16
FLOOR_BLOCKS: Final = 4
BACKGROUND_RATE: Final = 0.01
PEAK_DECAY_DB: Final = 0.05
SLOW_PEAK_DECAY_DB: Final = 0.015
DEAD_LINE_DB: Final = 10.0
N_FEATURES: Final = 2 * N_BANDS + 7
_EPS: Final = 1e-3

ULAW_TABLE_F32: Final[NDArray[np.float32]] = ULAW_DECODE_TABLE.astype(np.float32)
"""G.711 mu-law code -> linear sample (int16 scale) as float32."""


def _mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def band_matrix() -> NDArray[np.float32]:
    """(N_BINS, N_BANDS) triangular mel filters over the telephone band."""
    edges = _mel_to_hz(np.linspace(_mel(np.array(BAND_LO_HZ)), _mel(np.array(BAND_HI_HZ)), N_BANDS + 2))
    freqs = np.arange(N_BINS) * SAMPLE_RATE_HZ / NFFT
    mat = np.zeros((N_BINS, N_BANDS))
    for b in range(N_BANDS):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        mat[:, b] = np.clip(np.minimum(up, down), 0.0, None)
        mat[:, b] /= mat[:, b].sum()
    return mat.astype(np.float32)


_WINDOW: Final = np.hanning(WINDOW_SAMPLES + 2)[1:-1].astype(np.float32)
_BANDS: Final = band_matrix()
_LAG_MIN: Final = int(SAMPLE_RATE_HZ / PITCH_MAX_HZ)
_LAG_MAX: Final = int(SAMPLE_RATE_HZ / PITCH_MIN_HZ)


def _window_autocorr() -> NDArray[np.float32]:
    w = _WINDOW.astype(np.float64)
    full = np.correlate(w, w, "full")[WINDOW_SAMPLES - 1 :]
    out: NDArray[np.float32] = (full[_LAG_MIN : _LAG_MAX + 1] / full[0]).astype(np.float32)
    return out


_INV_WIN_AC: Final = (1.0 / _window_autocorr()).astype(np.float32)
_PRE_EMPH_GAIN: Final = (
    1.0 + PRE_EMPHASIS**2 - 2.0 * PRE_EMPHASIS * np.cos(2 * np.pi * np.arange(N_BINS) / NFFT)
).astype(np.float32)


class FeatureBank:
    """Feature state for up to ``capacity`` streams (see module docs).

    Args:
        capacity: how many streams (rows) the bank holds.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._hist = np.zeros((capacity, WINDOW_SAMPLES), dtype=np.float32)
        self._cur_min = np.full((capacity, N_BANDS), np.inf, dtype=np.float32)
        self._ring = np.full((capacity, N_BANDS, FLOOR_BLOCKS), np.inf, dtype=np.float32)
        self._ring_min = np.full((capacity, N_BANDS), np.inf, dtype=np.float32)
        self._ring_pos = np.zeros(capacity, dtype=np.int64)
        self._count = np.zeros(capacity, dtype=np.int64)
        self._background = np.zeros(capacity, dtype=np.float32)
        self._peak = np.zeros(capacity, dtype=np.float32)
        self._slow_peak = np.zeros(capacity, dtype=np.float32)
        self._last_level = np.zeros(capacity, dtype=np.float32)
        self._heard = np.zeros(capacity, dtype=bool)
        self.level_db = np.zeros(capacity, dtype=np.float32)
        """Mean band level (dB) of each stream's last frame."""
        self.floor_db = np.zeros(capacity, dtype=np.float32)
        """Mean band noise floor (dB) of each stream's last frame."""
        self.voicing = np.zeros(capacity, dtype=np.float32)
        """Voicing (0..1) of each stream's last frame."""

    def copy_rows_from(self, other: FeatureBank, count: int) -> None:
        """Take the state of ``other``'s first ``count`` streams (a bank that grew)."""
        for name in (
            "_hist",
            "_cur_min",
            "_ring",
            "_ring_min",
            "_ring_pos",
            "_count",
            "_background",
            "_peak",
            "_slow_peak",
            "_last_level",
            "_heard",
        ):
            getattr(self, name)[:count] = getattr(other, name)[:count]

    def reset(self, rows: NDArray[np.int64] | int) -> None:
        """Forget the state of ``rows`` (a new call in those slots)."""
        self._hist[rows] = 0.0
        self._cur_min[rows] = np.inf
        self._ring[rows] = np.inf
        self._ring_min[rows] = np.inf
        self._ring_pos[rows] = 0
        self._count[rows] = 0
        self._background[rows] = 0.0
        self._peak[rows] = 0.0
        self._slow_peak[rows] = 0.0
        self._last_level[rows] = 0.0
        self._heard[rows] = False

    def compute(self, rows: NDArray[np.int64], frames: NDArray[np.float32]) -> NDArray[np.float32]:
        """Features of one frame for each stream in ``rows``.

        Args:
            rows: stream slots, each at most once, shape (k,).
            frames: linear samples (int16 scale), shape (k, FRAME_SAMPLES), in ``rows`` order.

        Returns:
            Float32 array (k, N_FEATURES).
        """
        k = rows.shape[0]
        hist = self._hist[rows]
        count = self._count[rows] + 1
        # a stream's first frame fills the whole window: half a window of zeros would read
        # 3 dB quiet and set the noise floor too low for as long as the minimum is kept
        hist[:, :FRAME_SAMPLES] = np.where((count == 1)[:, None], frames, hist[:, FRAME_SAMPLES:])
        hist[:, FRAME_SAMPLES:] = frames
        self._hist[rows] = hist
        spec = np.fft.rfft(hist * _WINDOW, NFFT)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        band_db = 10.0 * np.log10(power @ _BANDS + _EPS)
        # autocorrelation of the pre-emphasised frame: inverse FFT of its power spectrum
        ac = np.fft.irfft(power * _PRE_EMPH_GAIN, NFFT)
        ac0 = ac[:, :1] + _EPS
        voicing = np.clip((ac[:, _LAG_MIN : _LAG_MAX + 1] * _INV_WIN_AC).max(axis=1) / ac0[:, 0], 0.0, 1.0)
        # minimum statistics over FLOOR_BLOCKS blocks of FLOOR_BLOCK_FRAMES frames
        level = band_db.mean(axis=1)
        # digital silence (a muted leg, a gap between recordings) is no line at all: it must not
        # pull the floor down, or the line noise that follows would read as speech for seconds
        live = level > DEAD_LINE_DB
        cur_min = self._cur_min[rows]
        cur_min = np.where(live[:, None], np.minimum(cur_min, band_db), cur_min)
        self._count[rows] = count
        ring_min = self._ring_min[rows]
        floor = np.minimum(ring_min, cur_min)
        floor = np.where(np.isinf(floor), band_db, floor)  # nothing heard yet: this frame
        rotate = count % FLOOR_BLOCK_FRAMES == 0
        if rotate.any():
            r_rows = rows[rotate]
            pos = self._ring_pos[r_rows]
            self._ring[r_rows, :, pos] = cur_min[rotate]
            self._ring_pos[r_rows] = (pos + 1) % FLOOR_BLOCKS
            self._ring_min[r_rows] = self._ring[r_rows].min(axis=2)
            cur_min[rotate] = np.inf
        self._cur_min[rows] = cur_min
        first = live & ~self._heard[rows]
        self._heard[rows] |= live
        background = self._background[rows]
        background = np.where(
            first, level, np.where(live, background + BACKGROUND_RATE * (level - background), background)
        )
        self._background[rows] = background
        peak = self._peak[rows] = _decaying_peak(first, level, self._peak[rows], PEAK_DECAY_DB)
        slow_peak = self._slow_peak[rows] = _decaying_peak(
            first, level, self._slow_peak[rows], SLOW_PEAK_DECAY_DB
        )
        last_level = self._last_level[rows]
        feats = np.empty((k, N_FEATURES), dtype=np.float32)
        snr = band_db - floor
        feats[:, :N_BANDS] = np.clip(snr, -10.0, 60.0) * 0.1
        feats[:, N_BANDS : 2 * N_BANDS] = (band_db - level[:, None]) * 0.1
        # no absolute level: a loud line is not a talking line (the network learnt that shortcut)
        feats[:, 2 * N_BANDS] = np.clip(level - np.where(first, level, last_level), -20.0, 20.0) * 0.05
        feats[:, 2 * N_BANDS + 1] = voicing
        feats[:, 2 * N_BANDS + 2] = np.clip(snr.mean(axis=1), -10.0, 60.0) * 0.1
        feats[:, 2 * N_BANDS + 3] = np.clip(level - background, -30.0, 30.0) * 0.1
        feats[:, 2 * N_BANDS + 4] = np.clip(level - peak, -40.0, 0.0) * 0.1
        mean_floor = floor.mean(axis=1)
        feats[:, 2 * N_BANDS + 5] = np.clip(peak - mean_floor, 0.0, 60.0) * 0.1
        feats[:, 2 * N_BANDS + 6] = np.clip(level - slow_peak, -40.0, 0.0) * 0.1
        self._last_level[rows] = np.where(live, level, last_level)
        self.level_db[rows] = level
        self.floor_db[rows] = mean_floor
        self.voicing[rows] = voicing
        return feats


def _decaying_peak(
    first: NDArray[np.bool_], level: NDArray[np.float32], previous: NDArray[np.float32], decay_db: float
) -> NDArray[np.float32]:
    """The loudest level so far, falling ``decay_db`` per frame; a stream's first live frame sets it."""
    out: NDArray[np.float32] = np.where(first, level, np.maximum(level, previous - decay_db))
    return out
