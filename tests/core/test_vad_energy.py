"""EnergyVad (the first VAD, kept as a baseline): synthetic telephone signals, hysteresis, noise floor."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
from numpy.typing import NDArray

from mediasrv.codec import array_to_ulaw, ulaw_to_array
from mediasrv.corpus import dev_corpus
from mediasrv.errors import CodecError
from mediasrv.vad import EnergyVad, EnergyVadConfig, VadResult
from tests.core.signals import FRAME, RATE, bandlimit, pink, scale_to_db, scene, speech_like, to_int16, white


def run_ulaw(vad: EnergyVad, pcm: NDArray[np.int16]) -> list[VadResult]:
    ulaw = array_to_ulaw(pcm)
    return [vad.process_ulaw(ulaw[i : i + FRAME]) for i in range(0, len(ulaw) - FRAME + 1, FRAME)]


CORPUS = dev_corpus()


@pytest.mark.parametrize(
    ("noise_kind", "snr_db"), [("white", 15.0), ("white", 10.0), ("pink", 20.0), ("pink", 10.0)]
)
def test_speech_in_noise_is_found_and_noise_is_not(noise_kind: str, snr_db: float) -> None:
    rng = np.random.default_rng(7)
    make = white if noise_kind == "white" else pink
    pcm = scene(make(4 * RATE, rng), speech_like(1.5, rng), snr_db, start_s=1.5)
    results = run_ulaw(EnergyVad(), pcm)
    active = np.array([r.active for r in results])
    # 1.5 s of noise first, then 1.5 s of speech-like sound, then 1 s of noise
    assert not active[:75].any()
    assert active[80:145].mean() > 0.9
    assert not active[165:].any()


@pytest.mark.parametrize("noise_kind", ["white", "pink"])
def test_stationary_noise_alone_never_activates(noise_kind: str) -> None:
    rng = np.random.default_rng(3)
    noise = (white if noise_kind == "white" else pink)(5 * RATE, rng)
    results = run_ulaw(EnergyVad(), to_int16(scale_to_db(noise, 55.0)))
    assert not any(r.active for r in results)
    assert max(r.prob for r in results) < 0.5


def test_digital_silence_is_not_speech() -> None:
    results = run_ulaw(EnergyVad(), np.zeros(2 * RATE, dtype=np.int16))
    assert not any(r.speech or r.active for r in results)
    assert all(r.prob == 0.0 for r in results)


def test_click_and_cough_bursts_are_rejected() -> None:
    rng = np.random.default_rng(11)
    base = scale_to_db(white(4 * RATE, rng), 40.0)
    base[RATE] += 30000.0  # a click
    cough = bandlimit(rng.standard_normal(int(0.25 * RATE))) * np.hanning(int(0.25 * RATE))
    i = int(2.5 * RATE)
    base[i : i + len(cough)] += scale_to_db(cough, 65.0)  # a 250 ms unvoiced burst, +25 dB
    results = run_ulaw(EnergyVad(), to_int16(base))
    assert not any(r.active for r in results)


def test_hysteresis_onset_delay_and_hangover() -> None:
    cfg = EnergyVadConfig()
    speech = to_int16(scale_to_db(_steady_vowel(1.0), 65.0))
    pcm = np.concatenate([np.zeros(RATE // 2, dtype=np.int16), speech, np.zeros(RATE, dtype=np.int16)])
    results = run_ulaw(EnergyVad(config=cfg), pcm)
    active = [r.active for r in results]
    first = active.index(True)
    assert first == 25 + cfg.onset_frames - 1  # speech starts at frame 25
    last = len(active) - 1 - active[::-1].index(True)
    speech_end_frame = 25 + 50 - 1
    assert speech_end_frame <= last <= speech_end_frame + cfg.hangover_frames
    # the raw per-frame decision drops at once
    assert not results[speech_end_frame + 1].speech


def _steady_vowel(seconds: float) -> NDArray[np.float64]:
    t = np.arange(int(seconds * RATE)) / RATE
    return bandlimit(
        sum(
            np.exp(-((((k * 150.0) - 800.0) / 700.0) ** 2)) * np.sin(2 * np.pi * 150.0 * k * t)
            for k in range(1, 22)
        )
    )


def test_noise_floor_follows_level_changes() -> None:
    rng = np.random.default_rng(9)
    quiet = scale_to_db(pink(3 * RATE, rng), 40.0)
    loud = scale_to_db(pink(4 * RATE, rng), 55.0)
    quiet_again = scale_to_db(pink(2 * RATE, rng), 40.0)
    vad = EnergyVad()
    r1 = run_ulaw(vad, to_int16(quiet))
    r2 = run_ulaw(vad, to_int16(loud))
    r3 = run_ulaw(vad, to_int16(quiet_again))
    floor_quiet = r1[-1].noise_db
    assert abs(r2[-1].noise_db - (floor_quiet + 15.0)) < 3.0  # caught up within 4 s
    assert not any(r.active for r in r2[75:])
    assert abs(r3[25].noise_db - floor_quiet) < 2.0  # falls within 0.5 s


@pytest.mark.parametrize("noise", ["white", "pink"])
def test_noise_step_after_digital_silence_does_not_stretch_speech(noise: str) -> None:
    """Digital silence, then a noisy line: the floor is the noise before the caller speaks.

    A live line that carried digital silence (a muted leg, a carrier's DTX) and then a noisy
    room must not leave the floor at the silence level: the noise would then count as speech
    after the caller stops, holding the turn open for up to a second.
    """
    rng = np.random.default_rng(4)
    make = white if noise == "white" else pink
    silence = np.zeros(2 * RATE)
    lead, tail = int(0.4 * RATE), int(1.5 * RATE)
    speech = speech_like(1.2, rng)
    bed = make(lead + len(speech) + tail, rng)
    line = scene(bed, np.concatenate([np.zeros(lead), speech]), 15.0, 0.0)
    results = run_ulaw(EnergyVad(), np.concatenate([to_int16(silence), line]))
    start = len(silence) // FRAME
    floor_before_speech = results[start + lead // FRAME - 1].noise_db
    level = 10 * np.log10(np.mean(line[:lead].astype(np.float64) ** 2) + 1.0)
    assert abs(floor_before_speech - level) < 3.0  # the floor is the noise within 0.4 s
    speech_end = start + (lead + len(speech)) // FRAME
    active = [i for i, r in enumerate(results) if r.active and r.speech]
    assert active and active[0] >= start  # the step itself is never speech
    assert speech_end - 10 <= active[-1] <= speech_end + 8  # ends with the speech (+ hangover)


def test_process_pcm_matches_process_ulaw() -> None:
    rng = np.random.default_rng(1)
    pcm = to_int16(scale_to_db(speech_like(1.0, rng) + 0.1 * white(RATE, rng), 60.0))
    ulaw = array_to_ulaw(pcm)
    a, b = EnergyVad(), EnergyVad()
    for i in range(0, len(ulaw), FRAME):
        ra = a.process_ulaw(ulaw[i : i + FRAME])
        rb = b.process_pcm(ulaw_to_array(ulaw[i : i + FRAME]))
        assert ra == rb


def test_reset_forgets_the_call() -> None:
    pcm = to_int16(scale_to_db(_steady_vowel(1.0), 65.0))
    vad = EnergyVad()
    first = run_ulaw(vad, pcm)
    vad.reset()
    assert run_ulaw(vad, pcm) == first


def test_wrong_frame_size_raises_codec_error() -> None:
    vad = EnergyVad()
    with pytest.raises(CodecError):
        vad.process_ulaw(b"\xff" * 159)
    with pytest.raises(CodecError):
        vad.process_pcm(np.zeros(320, dtype=np.int16))


# Accuracy floors measured on the dev corpus with the default config (0.90-0.94 per noise
# condition at the time of writing), kept 5 points lower so tuning noise does not flap them.
CORPUS_FLOORS = {"none": 0.87, "pink10": 0.85, "pink20": 0.88, "white15": 0.88}


@pytest.mark.skipif(not (CORPUS / "labels.json").exists(), reason="dev corpus not available")
def test_frame_accuracy_on_corpus_files() -> None:
    labels = json.loads((CORPUS / "labels.json").read_text())["utterances"]
    hits: dict[str, list[bool]] = {}
    for label in labels[:24]:
        with wave.open(str(CORPUS / label["file"])) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        cond = f"{label['noise']['type']}{label['noise']['snr_db'] or ''}"
        for i, r in enumerate(run_ulaw(EnergyVad(), pcm)):
            centre = i * 20 + 10
            truth = any(s["start_ms"] <= centre < s["end_ms"] for s in label["segments"])
            hits.setdefault(cond, []).append(r.active == truth)
    for cond, floor in CORPUS_FLOORS.items():
        assert np.mean(hits[cond]) >= floor, cond
