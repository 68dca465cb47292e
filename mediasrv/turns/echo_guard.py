"""EchoGuard: tells the agent's own echo apart from caller speech (acoustic and text checks).

Theory of operation
-------------------
On a speakerphone our TTS comes back on the inbound leg, 6-12 dB down, 40-200 ms late, after a
G.711 round trip and the line's filtering. We know exactly what we sent, so the guard keeps that
audio as a *reference* and asks, for each inbound frame heard while the agent speaks, whether the
frame's energy is explained by a delayed, scaled, slightly filtered copy of the reference.

Inputs (sans-I/O, audio time in ms at the *end* of each 20 ms frame; the two clocks may differ by
a frame or two, which the lag search absorbs):

* :meth:`EchoGuard.note_outbound` for every frame the pacer releases (160 mu-law bytes);
* :meth:`EchoGuard.assess_inbound` for every inbound frame; returns an :class:`EchoVerdict`.

Method:

1. **Timelines.** Outbound and inbound samples are decoded into float32 timelines indexed by
   absolute sample number (``t_ms * 8``), with 2.5 ms amplitude envelopes beside them; gaps
   read as silence. The reference keeps ``lag_max_ms`` plus the envelope window behind the
   inbound frame, and beyond it whatever the outbound timeline has run ahead of the inbound one:
   frames go out ahead of their playback (the pacer's lead) and a loaded event loop falls
   behind on inbound frames. Up to ``ahead_max_ms`` of that is held (about 1.2 s in all); a
   reference older than what is held reads as silence (nothing to explain an echo with), never
   as stale memory.
2. **Echo path search** (every ``search_every_frames`` frames until a path is found, then every
   ``refresh_every_frames``; only while the reference held sound in the last ``lag_max_ms``):
   (a) a coarse lag from the normalised cross-correlation of the envelopes over
   ``env_window_ms`` across lags ``lag_min_ms..lag_max_ms``; (b) a sample-exact lag from the
   normalised cross-correlation of the decoded signals within ``fine_search_samples`` of it;
   (c) a regularised least-squares FIR of ``taps`` taps centred on that lag, over
   ``fit_window_ms`` (gain plus the line's dispersion). The fit becomes *the* echo path only if
   it cancels at least ``accept_cancel_db`` of the inbound energy over its window (and more than
   the current path does there). Caller speech cannot be fitted from the reference, so a window
   with double talk never yields a path and the previous path stays.
3. **Per-frame verdict** (cheap: one short FIR and two dot products). The frame minus the path's
   echo estimate is the *residual*. The frame is echo when the residual is at least
   ``echo_cancel_db`` below the frame (the echo explains its energy) or the residual is no louder
   than the line's noise floor. Caller speech on top of the echo stays in the residual: not echo.
4. **Re-alignment on a miss.** A loud frame the path does not explain (or any loud frame before
   there is a path) is searched again *on that frame*, and judged again if a path is adopted:

   * with a path, the same FIR is slid over +-``realign_ms`` of its delay. The outbound timeline
     is placed on the sender's clock (frame after frame, or "now" after a gap), so each time
     playback restarts its offset to the real playback can step by up to a frame or so while the
     line itself stays the same: without this, the frames after such a step slipped through
     until the next periodic search. The energy each shift's estimate would have is checked
     first (``|y - est| >= |y| - |est|``): a frame louder than any echo the path can make there
     is double talk and costs no correlation;
   * without a path (the start of a call, before the periodic search has enough history), the
     delay is searched over the whole range on the last ``realign_frames`` frames and a FIR is
     fitted there: the first loud echo frame already finds the path.

   Either way the new path must cancel ``accept_cancel_db`` of what it is fitted to, and a fit
   louder than ``max_gain_db`` is refused (an acoustic echo comes back attenuated; the same
   sound at full level is someone saying it). Caller speech cannot be explained by the
   reference at any delay, so it is never adopted. After ``realign_every_miss`` misses in a row
   (double talk) only every other frame is re-aligned, to bound the cost; the periodic refresh
   adopts a fit only if it beats the current path on its window, and is skipped while the path
   cancels the latest frame by ``good_cancel_db`` or more.
5. Frames quieter than ``min_level_db`` are never echo (there is nothing to explain), and a frame
   that no path explains is never echo: the guard never suppresses what it cannot explain.

Rules: no I/O, no clock, no logging above DEBUG. This module only *reports* echo; the barge-in
decision stays with :class:`~mediasrv.turns.detector.TurnDetector` and the runner, which should
skip VAD voice (and words, via :func:`text_is_echo`) that the guard attributes to the agent.

The text check, :func:`text_is_echo`, is the old platform's filter: a transcript heard while the
agent talks is echo when >= 30 % of its words occur in recent agent text, when it is a word-exact
substring of it, or when both share a word trigram.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from mediasrv.codec import FRAME_MS, ULAW_DECODE_TABLE
from mediasrv.errors import CodecError

SAMPLE_RATE_HZ: Final = 8000
FRAME_SAMPLES: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000
SAMPLES_PER_MS: Final = SAMPLE_RATE_HZ // 1000
ENV_BLOCK_SAMPLES: Final = 20
"""Envelope resolution: 2.5 ms blocks."""
_EPS: Final = 1e-6
RIDGE: Final = 1e-3
"""Tikhonov weight of the path fit (relative to the mean reference energy): keeps taps small."""
_ULAW_F32: Final[NDArray[np.float32]] = ULAW_DECODE_TABLE.astype(np.float32)


@dataclass(frozen=True, slots=True)
class EchoConfig:
    """Tuning of :class:`EchoGuard` (defaults suit 8 kHz speakerphone echo).

    Attributes:
        lag_min_ms: smallest echo delay searched (negative: the outbound clock may run a
            frame or two ahead of the inbound one).
        lag_max_ms: largest echo delay searched.
        env_window_ms: inbound span whose envelope is matched for the coarse lag.
        fit_window_ms: inbound span used for the fine lag and the least-squares fit.
        fine_window_ms: inbound span used for the sample-exact lag.
        fine_search_samples: the fine lag is searched this many samples around the coarse one.
        taps: length of the fitted echo-path FIR (gain plus line dispersion).
        search_every_frames: frames between two path searches while no path is known.
        refresh_every_frames: frames between two path searches once a path is known.
        min_env_corr: envelope correlation below which no fit is attempted.
        accept_cancel_db: cancellation a fit must reach over its window to become the path.
        echo_cancel_db: cancellation that makes a frame echo.
        floor_margin_db: a residual within this much of the noise floor is echo too.
        min_level_db: frames below this level (dB re 1 LSB^2 per sample) are not assessed.
        realign_ms: a frame the path does not explain is re-aligned within this much of the
            path's delay (over the whole range while no path is known).
        realign_frames: without a path, the first one is searched and fitted on this many
            frames.
        max_gain_db: a fitted path louder than this (broadband) is refused: an acoustic echo
            comes back attenuated; the same sound at full level is a person saying it.
        good_cancel_db: while the path cancels the latest frame this well, the periodic
            refresh is skipped (it could not do better).
        realign_every_miss: this many unexplained frames in a row are each re-aligned; after
            that (double talk) only every other one.
        realign_min_corr: normalised correlation a frame needs with the reference at some delay
            before a per-frame fit is tried.
        ahead_max_ms: how far the outbound timeline may run ahead of the inbound one (the
            pacer's lead plus the inbound backlog of a loaded event loop) with every delay still
            searched; reference further behind the outbound end than that reads as silence.
    """

    lag_min_ms: int = -40
    lag_max_ms: int = 300
    env_window_ms: int = 300
    fit_window_ms: int = 160
    fine_window_ms: int = 80
    fine_search_samples: int = 16
    taps: int = 12
    search_every_frames: int = 2
    refresh_every_frames: int = 10
    min_env_corr: float = 0.2
    accept_cancel_db: float = 10.0
    echo_cancel_db: float = 6.0
    floor_margin_db: float = 4.0
    min_level_db: float = 30.0
    realign_ms: int = 40
    realign_frames: int = 4
    max_gain_db: float = -2.0
    good_cancel_db: float = 20.0
    realign_every_miss: int = 3
    realign_min_corr: float = 0.5
    ahead_max_ms: int = 500


@dataclass(frozen=True, slots=True)
class EchoVerdict:
    """What the guard concluded about one inbound frame.

    Attributes:
        echo_likely: the frame's sound is explained by our own outbound audio.
        similarity: normalised correlation (0..1) of the frame with the echo estimate.
        residual_db: residual energy relative to the frame energy, in dB (-15 means the echo
            estimate removed 15 dB; 0 means it explained nothing).
    """

    echo_likely: bool
    similarity: float
    residual_db: float


_QUIET: Final = EchoVerdict(echo_likely=False, similarity=0.0, residual_db=0.0)


class _Timeline:
    """float32 samples by absolute index; holds the last ``cap`` samples (older: silence)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf: NDArray[np.float32] = np.zeros(4 * cap, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self.buf.fill(0.0)
        self.w = self.cap  # buffer index of absolute sample ``end``
        self.end = 0

    def advance(self, new_end: int) -> None:
        """Extend the timeline to ``new_end`` with silence."""
        n = new_end - self.end
        if n <= 0:
            return
        if n >= self.cap:  # a jump past everything held: the whole window is silence
            self.buf[: self.cap].fill(0.0)
            self.w = self.cap
            self.end = new_end
            return
        if self.w + n > len(self.buf):  # compact: keep the newest ``cap`` samples
            self.buf[: self.cap] = self.buf[self.w - self.cap : self.w]
            self.w = self.cap
        self.buf[self.w : self.w + n].fill(0.0)
        self.w += n
        self.end = new_end

    def slot(self, stop: int, n: int) -> NDArray[np.float32] | None:
        """Writable view of ``[stop - n, stop)`` (the timeline grows to ``stop``); None if too old."""
        self.advance(stop)
        lo = self.w - (self.end - stop) - n
        if lo < self.w - self.cap:
            return None
        return self.buf[lo : lo + n]

    def view(self, start: int, stop: int) -> NDArray[np.float32]:
        """Samples ``[start, stop)`` (``stop <= end``); those older than the last ``cap`` read as
        silence (then a copy, not a view: the outbound timeline ran further ahead than it holds)."""
        base, held = self.w - self.end, self.end - self.cap
        if start >= held:
            return self.buf[base + start : base + stop]
        out = np.zeros(stop - start, dtype=np.float32)
        if stop > held:
            out[held - start :] = self.buf[base + held : base + stop]
        return out


class EchoGuard:
    """Acoustic echo check against the audio we sent (see module docs).

    Call :meth:`note_outbound` for each frame the pacer releases and :meth:`assess_inbound`
    for each inbound frame (at least while the agent speaks and ~300 ms after). Both are cheap;
    the path search runs every few frames.
    """

    def __init__(self, config: EchoConfig | None = None) -> None:
        """Create a guard with no reference and no echo path.

        Args:
            config: tuning; defaults to :class:`EchoConfig`.
        """
        cfg = self.config = config or EchoConfig()
        blk = ENV_BLOCK_SAMPLES
        self._lag_min = cfg.lag_min_ms * SAMPLES_PER_MS // blk * blk
        self._lag_max = cfg.lag_max_ms * SAMPLES_PER_MS // blk * blk
        self._env_n = cfg.env_window_ms * SAMPLES_PER_MS // blk * blk
        self._fit_n = cfg.fit_window_ms * SAMPLES_PER_MS
        self._lead = cfg.taps + cfg.fine_search_samples  # reference kept beyond lag_min
        # The reference also holds what the outbound timeline may have run ahead of the inbound.
        span = self._lag_max - self._lag_min + self._lead + FRAME_SAMPLES + cfg.ahead_max_ms * SAMPLES_PER_MS
        self._ref = _Timeline(max(self._env_n, self._fit_n) + span + cfg.taps + cfg.fine_search_samples)
        self._inb = _Timeline(self._fit_n + FRAME_SAMPLES)
        self._ref_env = _Timeline((self._env_n + span) // blk + 1)
        self._inb_env = _Timeline(self._env_n // blk + 1)
        self._sq: NDArray[np.float32] = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the reference, the inbound history and the echo path (start of a call)."""
        for timeline in (self._ref, self._inb, self._ref_env, self._inb_env):
            timeline.reset()
        self._h: NDArray[np.float32] | None = None  # FIR taps for delays lag0+taps-1 ... lag0
        self._lag0 = 0
        self._frames = 0
        self._floor_db = math.nan
        self._last_cancel_db = 0.0  # how well the path explained the last frame it judged
        self._misses = 0  # loud frames in a row the guard could not explain
        self._ref_loud_until = -(10**9)  # absolute sample by which reference sound was sent

    # ----------------------------------------------------------------- inputs

    def note_outbound(self, ulaw_frame: bytes, t_ms: int) -> None:
        """Record one frame of agent audio as the pacer releases it.

        Args:
            ulaw_frame: the 160-byte mu-law payload sent to Telnyx.
            t_ms: call audio time at the end of the frame.

        Raises:
            CodecError: the frame is not 160 bytes.
        """
        _check(ulaw_frame)
        stop = t_ms * SAMPLES_PER_MS
        energy = self._store(ulaw_frame, stop, self._ref, self._ref_env)
        if energy is not None and _level_db(energy) >= self.config.min_level_db:
            self._ref_loud_until = max(self._ref_loud_until, stop)

    def assess_inbound(self, ulaw_frame: bytes, t_ms: int) -> EchoVerdict:
        """Judge one inbound frame: is its sound our own echo?

        Args:
            ulaw_frame: the 160-byte mu-law payload received from Telnyx.
            t_ms: call audio time at the end of the frame.

        Returns:
            The frame's :class:`EchoVerdict`.

        Raises:
            CodecError: the frame is not 160 bytes.
        """
        _check(ulaw_frame)
        cfg = self.config
        stop = t_ms * SAMPLES_PER_MS
        self._ref.advance(stop - self._lag_min + self._lead)
        self._ref_env.advance((stop - self._lag_min + self._lead) // ENV_BLOCK_SAMPLES)
        e_in = self._store(ulaw_frame, stop, self._inb, self._inb_env)
        if e_in is None:
            return _QUIET
        level = _level_db(e_in)
        self._frames += 1
        echo_possible = stop - self._lag_max - FRAME_SAMPLES <= self._ref_loud_until
        every = cfg.search_every_frames if self._h is None else cfg.refresh_every_frames
        if echo_possible and self._frames % every == 0 and self._last_cancel_db < cfg.good_cancel_db:
            self._search_path(stop)
        if level < cfg.min_level_db or not echo_possible:
            self._track_floor(level)
            return _QUIET
        y = self._inb.view(stop - FRAME_SAMPLES, stop)
        judged = None if self._h is None else self._judge(y, e_in, stop)
        if judged is None or not judged[0]:
            # Unexplained: re-align on this frame. A long run of them is the caller talking
            # (double talk); then only every other frame is tried, to bound the cost.
            misses = self._misses = self._misses + 1
            if (misses <= cfg.realign_every_miss or misses % 2 == 0) and self._realign(stop, y, e_in):
                judged = self._judge(y, e_in, stop)
        if judged is not None and judged[0]:
            self._misses = 0
        if judged is None:
            self._track_floor(level)
            return _QUIET
        echo, similarity, residual_db, res_level = judged
        self._last_cancel_db = -residual_db
        self._track_floor(res_level)
        return EchoVerdict(echo_likely=echo, similarity=similarity, residual_db=residual_db)

    def _judge(self, y: NDArray[np.float32], e_in: float, stop: int) -> tuple[bool, float, float, float]:
        """(echo, similarity, residual dB re frame, residual level) of frame ``y`` via the path."""
        cfg = self.config
        est = self._estimate(stop - FRAME_SAMPLES, stop)
        e_est = float(np.dot(est, est))
        cross = float(np.dot(y, est))
        e_res = max(0.0, e_in - 2.0 * cross + e_est)  # |y - est|^2
        similarity = max(0.0, cross / math.sqrt(e_in * e_est + _EPS))
        residual_db = 10.0 * math.log10((e_res + _EPS) / (e_in + _EPS))
        res_level = _level_db(e_res)
        floor = self._floor_db if not math.isnan(self._floor_db) else res_level
        echo = -residual_db >= cfg.echo_cancel_db or res_level <= floor + cfg.floor_margin_db
        return echo, similarity, residual_db, res_level

    def _realign(self, stop: int, y: NDArray[np.float32], e_in: float) -> bool:
        """Re-find the path on the latest inbound (this frame was not explained); True if a
        path was adopted.

        The outbound timeline is placed by the sender's clock, so its offset to the real
        playback steps by up to a frame or so whenever playback restarts after a gap, while the
        line itself does not change. With a path, the same FIR is tried at every shift within
        ``realign_ms`` on this one frame: the shift that cancels ``accept_cancel_db`` becomes
        the new delay. Without a path (the first echo of a call), the delay is searched over
        the whole range on the last ``realign_frames`` frames and a FIR fitted there. Caller
        speech cannot be explained by the reference at any delay, so it is never adopted.
        """
        cfg = self.config
        if self._h is not None:
            return self._shift_path(stop, y, e_in)
        n = cfg.realign_frames * FRAME_SAMPLES
        lo, hi = self._lag_min, self._lag_max
        yy = self._inb.view(stop - n, stop)
        seg = self._ref.view(stop - n - hi, stop - lo)
        cross = np.correlate(seg, yy, "valid")  # index m <-> delay hi - m
        sq = np.concatenate(([0.0], np.cumsum(np.square(seg, dtype=np.float64))))
        energy = sq[n:] - sq[:-n]
        score = np.square(cross, dtype=np.float64) / (energy * float(np.dot(yy, yy)) + _EPS)
        m = int(np.argmax(score))
        if score[m] < cfg.realign_min_corr**2:
            return False
        fit = self._fit_at(stop, hi - m, n)
        if fit is None or not self._explains(float(np.dot(yy, yy)) / cfg.realign_frames, fit[2]):
            return False
        self._h, self._lag0 = fit[0], fit[1]
        return True

    def _shift_path(self, stop: int, y: NDArray[np.float32], e_in: float) -> bool:
        """Move the current path by the shift (within ``realign_ms``) that explains frame ``y``.

        Cheap on purpose (it runs on every unexplained frame, so on all double talk): the
        energy of the echo the path would make at each shift is approximated from the
        reference's energy and the path's gain; unless some shift could make about the frame's
        own energy, the frame is louder than any echo (the caller over it) and nothing else is
        done. Otherwise one correlation of the reference with the frame filtered by the path
        picks the shift, and the exact residual there decides.
        """
        assert self._h is not None
        cfg, h, n = self.config, self._h, FRAME_SAMPLES
        taps, span = len(h), cfg.realign_ms * SAMPLES_PER_MS
        lo = max(self._lag_min - self._lag0, -span)  # shifts of lag0 tried: lo..hi
        hi = min(self._lag_max - self._lag0, span)
        seg = self._ref.view(stop - n - self._lag0 - hi - taps + 1, stop - self._lag0 - lo)
        sq = np.concatenate(([0.0], np.cumsum(np.square(seg, dtype=np.float64))))
        c = taps // 2
        gain = float(np.dot(h, h))
        e_est = (sq[n + c : len(sq) - taps + 1 + c] - sq[c : len(sq) - n - taps + 1 + c]) * gain
        # |y - est|^2 >= (|y| - |est|)^2: only a shift whose echo has about the frame's energy can
        # cancel accept_cancel_db (with a margin: the energies here are approximate).
        r = 10.0 ** (-cfg.echo_cancel_db / 20.0)
        plausible = (e_est >= e_in * (1.0 - r) ** 2 / 2.0) & (e_est <= e_in * (1.0 + r) ** 2 * 2.0)
        if not plausible.any():
            return False
        cross = np.correlate(seg, np.convolve(y, h), "valid")  # index m <-> shift hi - m
        score = np.where(plausible, cross, 0.0) / np.sqrt(e_est + _EPS)
        shift = hi - int(np.argmax(score))
        lag0 = self._lag0
        self._lag0 = lag0 + shift
        res = y - self._estimate(stop - n, stop)
        if not self._explains(e_in, 10.0 * math.log10(e_in / (float(np.dot(res, res)) + _EPS))):
            self._lag0 = lag0
            return False
        return True

    def _explains(self, e_frame: float, cancel_db: float) -> bool:
        """May a path that cancels ``cancel_db`` of a frame of energy ``e_frame`` be adopted?

        It must cancel ``accept_cancel_db``, or, for a quiet frame whose achievable cancellation
        the line noise limits, ``echo_cancel_db`` down to the noise floor.
        """
        cfg = self.config
        if cancel_db >= cfg.accept_cancel_db:
            return True
        floor = self._floor_db
        res_level = _level_db(e_frame) - cancel_db
        return (
            cancel_db >= cfg.echo_cancel_db
            and not math.isnan(floor)
            and res_level <= floor + cfg.floor_margin_db
        )

    def _store(self, frame: bytes, stop: int, samples: _Timeline, env: _Timeline) -> float | None:
        """Decode a frame into ``samples`` and its block amplitudes into ``env``; its energy."""
        out = samples.slot(stop, FRAME_SAMPLES)
        env_out = env.slot(stop // ENV_BLOCK_SAMPLES, FRAME_SAMPLES // ENV_BLOCK_SAMPLES)
        if out is None or env_out is None:
            return None
        np.take(_ULAW_F32, np.frombuffer(frame, dtype=np.uint8), out=out)
        sq = self._sq
        np.multiply(out, out, out=sq)
        np.add.reduce(sq.reshape(-1, ENV_BLOCK_SAMPLES), axis=1, out=env_out)
        energy = float(np.add.reduce(env_out))
        np.sqrt(env_out, out=env_out)
        return energy

    # ---------------------------------------------------------------- results

    @property
    def echo_lag_ms(self) -> float | None:
        """Delay of the echo path's main tap in ms (None until a path is found)."""
        if self._h is None:
            return None
        main = int(np.argmax(np.abs(self._h[::-1])))
        return (self._lag0 + main) / SAMPLES_PER_MS

    @property
    def echo_gain_db(self) -> float | None:
        """Broadband gain of the echo path in dB (e.g. -6.0), None until a path is found."""
        if self._h is None:
            return None
        return 10.0 * math.log10(float(np.dot(self._h, self._h)) + 1e-12)

    # -------------------------------------------------------------- internals

    def _estimate(self, start: int, stop: int) -> NDArray[np.float32]:
        """Echo estimate for inbound samples ``[start, stop)`` through the current path."""
        assert self._h is not None
        taps = len(self._h)
        seg = self._ref.view(start - self._lag0 - taps + 1, stop - self._lag0)
        return np.correlate(seg, self._h, "valid")

    def _track_floor(self, level_db: float) -> float:
        """Minimum tracker of the residual level: down fast, up slowly (line noise)."""
        floor = self._floor_db
        if math.isnan(floor):
            floor = level_db
        elif level_db < floor:
            floor += 0.3 * (level_db - floor)
        else:
            floor += min(0.3, 0.02 * (level_db - floor))
        self._floor_db = floor
        return floor

    def _search_path(self, stop: int) -> None:
        coarse = self._coarse_lag(stop)
        if coarse is None:
            return
        lag = self._fine_lag(stop, coarse)
        self._fit(stop, lag)

    def _coarse_lag(self, stop: int) -> int | None:
        """Delay (samples) whose reference envelope best matches the inbound one, or None."""
        blk = ENV_BLOCK_SAMPLES
        a = self._inb_env.view((stop - self._env_n) // blk, stop // blk).astype(np.float64)
        r = self._ref_env.view((stop - self._env_n - self._lag_max) // blk, (stop - self._lag_min) // blk)
        a -= a.mean()
        norm_a = float(np.dot(a, a))
        if norm_a <= _EPS:
            return None
        nb = len(a)
        c1 = np.cumsum(r, dtype=np.float64)
        c2 = np.cumsum(np.square(r, dtype=np.float64))
        s1 = c1[nb - 1 :] - np.concatenate(([0.0], c1[:-nb]))
        s2 = c2[nb - 1 :] - np.concatenate(([0.0], c2[:-nb]))
        var = np.maximum(s2 - s1 * s1 / nb, _EPS)
        corr = np.correlate(r, a, "valid") / np.sqrt(var * norm_a)
        k = int(np.argmax(corr))
        if corr[k] < self.config.min_env_corr:
            return None
        return self._lag_max - k * blk

    def _fine_lag(self, stop: int, coarse: int) -> int:
        """Sample-exact delay near ``coarse`` by normalised cross-correlation."""
        f, n = self.config.fine_search_samples, self.config.fine_window_ms * SAMPLES_PER_MS
        hi = min(self._lag_max, coarse + f)
        lo = max(self._lag_min, coarse - f)
        y = self._inb.view(stop - n, stop)
        seg = self._ref.view(stop - n - hi, stop - lo)
        cross = np.correlate(seg, y, "valid")  # index m <-> delay hi - m
        sq = np.concatenate(([0.0], np.cumsum(seg.astype(np.float64) ** 2)))
        energy = sq[n:] - sq[:-n]
        score = np.abs(cross) / np.sqrt(energy + _EPS)
        return hi - int(np.argmax(score))

    def _fit(self, stop: int, lag: int) -> None:
        """Least-squares FIR around ``lag`` over ``fit_window_ms``; adopt it if it cancels enough
        of the window and more than the current path does there."""
        cfg, n = self.config, self._fit_n
        fit = self._fit_at(stop, lag, n)
        if fit is None or fit[2] < cfg.accept_cancel_db:
            return
        if self._h is not None:
            y = self._inb.view(stop - n, stop)
            res = y - self._estimate(stop - n, stop)
            current_db = 10.0 * math.log10(float(np.dot(y, y)) / (float(np.dot(res, res)) + _EPS))
            if current_db >= fit[2]:
                return
        self._h, self._lag0 = fit[0], fit[1]

    def _fit_at(self, stop: int, lag: int, n: int) -> tuple[NDArray[np.float32], int, float] | None:
        """(taps, first delay, cancellation dB) of the FIR around ``lag`` fitted to the last
        ``n`` inbound samples; None if they are too quiet to fit or the gain is implausible."""
        taps = self.config.taps
        lag0 = lag - taps // 2
        y = self._inb.view(stop - n, stop)
        e_y = float(np.dot(y, y))
        if _level_db(e_y / n * FRAME_SAMPLES) < self.config.min_level_db:
            return None
        x = sliding_window_view(self._ref.view(stop - n - lag0 - taps + 1, stop - lag0), taps)
        xm = np.ascontiguousarray(x, dtype=np.float64)
        gram = xm.T @ xm
        gram.flat[:: taps + 1] += RIDGE * float(np.trace(gram)) / taps + 1.0
        h = np.linalg.solve(gram, xm.T @ y)
        if 10.0 * math.log10(float(np.dot(h, h)) + 1e-12) > self.config.max_gain_db:
            return None  # louder than any acoustic echo: the same sound said again, not echo
        res = y - xm @ h
        cancel_db = 10.0 * math.log10(e_y / (float(np.dot(res, res)) + _EPS))
        return h.astype(np.float32), lag0, cancel_db


# ------------------------------------------------------------------------------ text filter

TEXT_OVERLAP_MIN: Final = 0.3
"""Share of the transcript's words found in recent agent text that makes it echo."""
TEXT_MIN_WORDS: Final = 2
"""Shorter transcripts ("yes", "no") are real answers: the text filter never calls them echo."""
_TEXT_WORD_RE: Final = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def _norm_words(text: str) -> list[str]:
    return _TEXT_WORD_RE.findall(text.lower().replace("\u2019", "'"))


def _trigrams(words: list[str]) -> set[tuple[str, str, str]]:
    return {(words[i], words[i + 1], words[i + 2]) for i in range(len(words) - 2)}


def text_is_echo(transcript: str, recent_agent_text: Iterable[str]) -> bool:
    """The old platform's text filter: is this transcript the STT hearing our own words?

    Both sides are normalised (lower case, punctuation dropped, words only). The transcript is
    echo when, against any recent agent text, (a) >= 30 % of its distinct words occur in it,
    (b) it occurs in it as a whole-word substring, or (c) both share a word trigram.
    Transcripts of fewer than :data:`TEXT_MIN_WORDS` words are never echo by text ("yes" in
    reply to "say yes to confirm" is an answer; the acoustic check covers single words).

    Args:
        transcript: what the STT heard on the inbound leg while the agent talked.
        recent_agent_text: the agent's recent lines (the current reply and the one before).

    Returns:
        True if the transcript looks like the agent's own words.
    """
    words = _norm_words(transcript)
    if len(words) < TEXT_MIN_WORDS:
        return False
    distinct = set(words)
    joined = " " + " ".join(words) + " "
    grams = _trigrams(words)
    for agent in recent_agent_text:
        agent_words = _norm_words(agent)
        if not agent_words:
            continue
        if joined in " " + " ".join(agent_words) + " ":
            return True
        if len(distinct & set(agent_words)) >= TEXT_OVERLAP_MIN * len(distinct):
            return True
        if grams & _trigrams(agent_words):
            return True
    return False


def _level_db(energy: float) -> float:
    """Frame level in dB re 1 LSB^2 per sample (the VAD's scale)."""
    return 10.0 * math.log10(energy / FRAME_SAMPLES + 1.0)


def _check(frame: bytes) -> None:
    if len(frame) != FRAME_SAMPLES:
        raise CodecError(f"echo guard: frame has {len(frame)} bytes, expected {FRAME_SAMPLES}")
