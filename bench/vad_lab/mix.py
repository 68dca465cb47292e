"""Training scenes for the VAD model: clean speech placed in time, a phone line, labels (lab code).

A scene is ``SCENE_S`` seconds of what a Telnyx stream would carry: speech clips from one talker
with pauses of every length between them (including none), at a random level, through a random
line: background noise of many kinds at -5..30 dB SNR (white, pink, brown, car, street, babble of
other talkers, music on hold, mains hum, call-progress tones and DTMF, clicks), sometimes a noise
that starts or changes level mid-scene, room reverberation, the telephone band with random edges,
clipping, lost packets played as silence, and always the G.711 mu-law round trip.

Labels follow the rule ``../shared/corpus/real`` was labelled with, applied to each clean clip:
10 ms frames within 30 dB of the clip's loudest frame are speech, gaps under 120 ms are bridged.
A 20 ms frame's target is the mean of its two 10 ms labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mediasrv.codec import ULAW_DECODE_TABLE, array_to_ulaw

RATE = 8000
SCENE_S = 8.0
SCENE_SAMPLES = int(SCENE_S * RATE)
LABEL_MS = 10
LABEL_SAMPLES = RATE * LABEL_MS // 1000
FRAME_SAMPLES = 160

Array = NDArray[np.float64]


@dataclass
class Pool:
    """Clean clips (float, int16 scale) with their speakers, and music."""

    clips: list[NDArray[np.float32]]
    speakers: NDArray[np.str_]
    music: NDArray[np.float32]

    @classmethod
    def load(cls, path: str, *, exclude: tuple[str, ...] = ()) -> Pool:
        data = np.load(path)
        audio, lengths = data["audio"], data["lengths"]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        clips = [audio[offsets[i] : offsets[i + 1]] for i in range(len(lengths))]
        speakers = data["speakers"]
        keep = [i for i, s in enumerate(speakers) if not any(s.startswith(e) for e in exclude)]
        return cls([clips[i] for i in keep], speakers[keep], data["music"])


def clip_labels(clip: Array) -> NDArray[np.bool_]:
    """Speech per 10 ms frame of a clean clip (the corpus rule: within 30 dB of the peak frame)."""
    n = len(clip) // LABEL_SAMPLES
    frames = clip[: n * LABEL_SAMPLES].reshape(n, LABEL_SAMPLES)
    db = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-9)
    return db >= db.max() - 30.0


def bridge(labels: NDArray[np.bool_], max_gap: int = 12) -> NDArray[np.bool_]:
    """Fill gaps shorter than ``max_gap`` frames between two speech frames."""
    out = labels.copy()
    idx = np.flatnonzero(labels)
    if idx.size < 2:
        return out
    gaps = np.diff(idx)
    for i in np.flatnonzero((gaps > 1) & (gaps < max_gap)):
        out[idx[i] : idx[i + 1]] = True
    return out


def _colored(n: int, rng: np.random.Generator, exponent: float) -> Array:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / RATE)
    freqs[0] = freqs[1]
    spec *= freqs ** (-exponent / 2)
    return np.fft.irfft(spec, n)


def _tones(n: int, rng: np.random.Generator) -> Array:
    t = np.arange(n) / RATE
    kind = rng.integers(4)
    if kind == 0:  # DTMF digits
        out = np.zeros(n)
        pos = int(rng.uniform(0, 1) * RATE)
        lows, highs = (697, 770, 852, 941), (1209, 1336, 1477)
        while pos < n:
            dur = int(rng.uniform(0.06, 0.25) * RATE)
            seg = slice(pos, min(n, pos + dur))
            tt = t[seg]
            out[seg] = np.sin(2 * np.pi * rng.choice(lows) * tt) + np.sin(2 * np.pi * rng.choice(highs) * tt)
            pos += dur + int(rng.uniform(0.05, 0.8) * RATE)
        return out
    if kind == 1:  # ringback: 440 + 480 Hz, 2 s on 4 s off
        on = (t + rng.uniform(0, 6)) % 6 < 2
        return (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * on
    if kind == 2:  # busy / reorder
        period = rng.choice([0.5, 1.0])
        on = (t % period) < period / 2
        return (np.sin(2 * np.pi * 480 * t) + np.sin(2 * np.pi * 620 * t)) * on
    freq = rng.uniform(400, 2000)  # beeps
    on = (t % rng.uniform(0.5, 3.0)) < rng.uniform(0.1, 0.5)
    return np.sin(2 * np.pi * freq * t) * on


def _car(n: int, rng: np.random.Generator) -> Array:
    t = np.arange(n) / RATE
    rumble = _colored(n, rng, 2.2)
    rumble /= rumble.std() + 1e-9
    f0 = rng.uniform(20, 60) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    hum = sum(np.sin(k * phase) / k for k in range(1, 12))
    return rumble + rng.uniform(0.1, 0.6) * hum / (np.std(hum) + 1e-9)


def _street(n: int, rng: np.random.Generator) -> Array:
    t = np.arange(n) / RATE
    base = _colored(n, rng, rng.uniform(1.0, 2.0))
    swell = 1 + rng.uniform(0.5, 3.0) * np.exp(-(((t - rng.uniform(0, n / RATE)) / rng.uniform(0.5, 2)) ** 2))
    return base * swell


def _hum(n: int, rng: np.random.Generator) -> Array:
    t = np.arange(n) / RATE
    mains = rng.choice([50.0, 60.0])
    return sum(
        rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6)) for k in range(1, 40, 2)
    )


def _clicks(n: int, rng: np.random.Generator) -> Array:
    out = np.zeros(n)
    for pos in rng.integers(0, n - 40, size=rng.integers(3, 30)):
        out[pos : pos + 40] += rng.standard_normal(40) * np.exp(-np.arange(40) / 6)
    return out + 0.02 * rng.standard_normal(n)


def _talker_stream(pool: Pool, n: int, rng: np.random.Generator, avoid: str) -> Array:
    out = np.zeros(n)
    pos = int(rng.uniform(-1, 0) * RATE)
    while pos < n:
        i = int(rng.integers(len(pool.clips)))
        if pool.speakers[i] == avoid:
            continue
        clip = pool.clips[i].astype(np.float64)
        clip = clip / (clip.std() + 1e-9)
        a, b = max(0, pos), min(n, pos + len(clip))
        if b > a:
            out[a:b] += clip[a - pos : b - pos]
        pos += len(clip) + int(rng.uniform(0.0, 0.3) * RATE)
    return out


def make_noise(kind: str, pool: Pool, rng: np.random.Generator, avoid: str, n: int = SCENE_SAMPLES) -> Array:
    """``n`` samples of one kind of background (arbitrary scale)."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return _colored(n, rng, 1.0)
    if kind == "brown":
        return _colored(n, rng, 2.0)
    if kind == "car":
        return _car(n, rng)
    if kind == "street":
        return _street(n, rng)
    if kind == "babble":
        return sum(_talker_stream(pool, n, rng, avoid) for _ in range(int(rng.integers(3, 9))))  # type: ignore[return-value]
    if kind == "talker":  # one other voice in the background, well below the caller
        return _talker_stream(pool, n, rng, avoid)
    if kind == "music":
        start = int(rng.integers(0, len(pool.music) - n))
        return pool.music[start : start + n].astype(np.float64)
    if kind == "hum":
        return _hum(n, rng)
    if kind == "tones":
        return _tones(n, rng) + 0.01 * rng.standard_normal(n)
    if kind == "clicks":
        return _clicks(n, rng)
    raise ValueError(kind)


NOISE_KINDS = (
    "white",
    "pink",
    "brown",
    "car",
    "street",
    "babble",
    "talker",
    "music",
    "hum",
    "tones",
    "clicks",
)
NOISE_WEIGHTS = np.array([1.2, 1.2, 0.6, 1.0, 0.8, 2.0, 0.6, 0.8, 0.3, 0.4, 0.3])


def _bandpass(x: Array, lo: float, hi: float) -> Array:
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / RATE)
    gain = 1 / (1 + (lo / np.maximum(freqs, 1.0)) ** 8) / (1 + (freqs / hi) ** 16)
    return np.fft.irfft(spec * gain, len(x))


def _brickwall(x: Array, lo: float, hi: float) -> Array:
    """A steep telephone band (a codec's filters), nothing outside it but quantisation noise."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / RATE)
    spec[(freqs < lo) | (freqs > hi)] = 0.0
    return np.fft.irfft(spec, len(x))


def _reverb(x: Array, rng: np.random.Generator) -> Array:
    rt60 = rng.uniform(0.15, 0.8)
    length = int(min(rt60, 0.6) * RATE)
    t = np.arange(length) / RATE
    rir = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)
    rir[0] = rng.uniform(1.0, 4.0) * np.abs(rir).max()
    y = np.fft.irfft(np.fft.rfft(x, len(x) + length) * np.fft.rfft(rir, len(x) + length))[: len(x)]
    return y * (np.std(x) / (np.std(y) + 1e-9))


@dataclass
class Scene:
    """One training scene: mu-law-decoded samples, 10 ms labels and what went into it."""

    audio: NDArray[np.float32]
    labels: NDArray[np.bool_]
    noise: str
    snr_db: float | None


def make_scene(pool: Pool, rng: np.random.Generator, seconds: float = SCENE_S) -> Scene:
    """Compose one scene (see module docs)."""
    n = int(seconds * RATE)
    speech = np.zeros(n)
    labels = np.zeros(n // LABEL_SAMPLES, dtype=bool)
    talker = ""
    if rng.random() > 0.2:  # some scenes are line noise alone, however loud and long
        first = int(rng.integers(len(pool.clips)))
        talker = str(pool.speakers[first])
        same = np.flatnonzero(pool.speakers == talker)
        # the caller often starts late: seconds of line noise come first
        r_lead = rng.random()
        lead = (
            rng.uniform(0.0, 0.1)  # speech from the stream's first frame
            if r_lead < 0.1
            else rng.uniform(0.05, 2.0)
            if r_lead < 0.6
            else rng.uniform(2.0, max(2.5, seconds - 2.0))
        )
        pos = int(lead * RATE)
        level = rng.uniform(-38, -12)  # dBFS RMS of speech
        while pos < n - RATE // 10:
            clip = pool.clips[int(rng.choice(same))].astype(np.float64)
            gain_db = level + rng.normal(0, 2.5)
            if rng.random() < 0.15:  # the caller moves the phone: a step in level
                level += rng.choice([-1.0, 1.0]) * rng.uniform(6, 15)
                gain_db = level
            rms = np.sqrt(np.mean(clip**2)) + 1e-9
            clip = clip / rms * 32768 * 10 ** (gain_db / 20)
            end = min(n, pos + len(clip))
            speech[pos:end] += clip[: end - pos]
            lab = clip_labels(clip)
            a = pos // LABEL_SAMPLES
            m = min(len(lab), len(labels) - a)
            labels[a : a + m] |= lab[:m]
            r = rng.random()
            pause = (
                rng.uniform(0.0, 0.25)
                if r < 0.35
                else rng.uniform(0.25, 0.9)
                if r < 0.75
                else rng.uniform(0.9, 3.0)
            )
            pos = end + int(pause * RATE)
        labels = bridge(labels)
    if rng.random() < 0.2:
        speech = _reverb(speech, rng)
    active = speech[np.repeat(labels, LABEL_SAMPLES)[:n]] if labels.any() else speech
    speech_power = (
        float(np.mean(active**2)) if labels.any() else (32768 * 10 ** (rng.uniform(-38, -12) / 20)) ** 2
    )
    kind, snr = "none", None
    mix = speech.copy()
    if rng.random() < 0.85:
        kind = str(rng.choice(NOISE_KINDS, p=NOISE_WEIGHTS / NOISE_WEIGHTS.sum()))
        noise = make_noise(kind, pool, rng, talker, n)
        if kind == "talker":
            snr = float(rng.uniform(8, 30))
        elif kind == "babble":
            snr = float(rng.uniform(0, 22))
        else:
            snr = float(rng.uniform(-5, 30) if rng.random() < 0.8 else rng.uniform(-5, 8))
            if not labels.any():  # a line with nobody on it: often a loud one
                snr = float(rng.uniform(-10, 15))
        noise = noise / (np.sqrt(np.mean(noise**2)) + 1e-9) * math.sqrt(speech_power / 10 ** (snr / 10))
        shape = rng.random()
        if shape < 0.1:  # the noise starts (or stops) mid-scene
            step = int(rng.uniform(0.5, seconds - 0.5) * RATE)
            env = np.zeros(n)
            if rng.random() < 0.5:
                env[step:] = 1
            else:
                env[:step] = 1
            noise = noise * env
        elif shape < 0.2:  # the noise level drifts
            noise = noise * np.linspace(10 ** (rng.uniform(-1, 1) / 2), 10 ** (rng.uniform(-1, 1) / 2), n)
        mix += noise
        if rng.random() < 0.15:  # a second, quieter background
            extra = make_noise(str(rng.choice(("white", "pink", "hum", "car"))), pool, rng, talker, n)
            mix += (
                extra
                / (np.std(extra) + 1e-9)
                * math.sqrt(speech_power / 10 ** ((snr + rng.uniform(5, 20)) / 10))
            )
    # line floor: even a "clean" line hisses a little
    mix += rng.standard_normal(n) * 32768 * 10 ** (rng.uniform(-90, -60) / 20)
    if rng.random() < 0.9:
        lo, hi = rng.uniform(150, 400), rng.uniform(3000, 3700)
        mix = _brickwall(mix, lo, hi) if rng.random() < 0.4 else _bandpass(mix, lo, hi)
    if rng.random() < 0.08:  # clipping on a hot line
        limit = np.percentile(np.abs(mix), rng.uniform(95, 99.9))
        mix = np.clip(mix * rng.uniform(1, 3), -limit, limit)
    peak = np.abs(mix).max()
    if peak > 32000:
        mix *= 32000 / peak
    pcm = np.clip(np.round(mix), -32768, 32767).astype(np.int16)
    ulaw = np.frombuffer(array_to_ulaw(pcm), dtype=np.uint8).copy()
    _digital_silence(ulaw, labels, rng, n)
    if rng.random() < 0.12:  # packet loss: lost 20 ms frames played as silence
        frames = len(ulaw) // FRAME_SAMPLES
        rate = rng.uniform(0.01, 0.08)
        i = 0
        while i < frames:
            if rng.random() < rate / 2:
                burst = int(rng.integers(1, 4))
                ulaw[i * FRAME_SAMPLES : (i + burst) * FRAME_SAMPLES] = 0xFF
                i += burst
            i += 1
    audio = ULAW_DECODE_TABLE[ulaw].astype(np.float32)
    return Scene(audio, labels, kind, snr)


def _digital_silence(
    ulaw: NDArray[np.uint8], labels: NDArray[np.bool_], rng: np.random.Generator, n: int
) -> None:
    """A line that is digitally silent before, after or for a while inside the scene (in place).

    Muted legs, discontinuous transmission and the gaps between a test caller's recordings all
    reach the VAD as code 0xFF; what is silenced is not speech.
    """
    per_label = LABEL_SAMPLES
    r = rng.random()
    if r < 0.15:
        cut = int(rng.uniform(0.2, min(3.0, n / RATE - 1.0)) * RATE)
        ulaw[:cut] = 0xFF
        labels[: cut // per_label] = False
    elif r < 0.22:
        cut = int(rng.uniform(max(0.5, n / RATE - 2.5), n / RATE - 0.3) * RATE)
        ulaw[cut:] = 0xFF
        labels[cut // per_label :] = False
    elif r < 0.27:
        a = int(rng.uniform(0.5, n / RATE - 2.0) * RATE)
        b = a + int(rng.uniform(0.2, 1.5) * RATE)
        ulaw[a:b] = 0xFF
        labels[a // per_label : b // per_label] = False


def frame_targets(labels: NDArray[np.bool_]) -> NDArray[np.float32]:
    """20 ms targets: the mean of each pair of 10 ms labels."""
    n = len(labels) // 2
    return labels[: 2 * n].reshape(n, 2).mean(axis=1).astype(np.float32)
