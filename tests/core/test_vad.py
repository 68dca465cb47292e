"""mediasrv's VAD (features + network + segmenter): signals, batching, boundaries, real speech."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from mediasrv.codec import array_to_ulaw, ulaw_to_array
from mediasrv.corpus import shared_root
from mediasrv.errors import CodecError, ConfigError
from mediasrv.tools.turns_tool import read_ulaw_8k
from mediasrv.tools.vad_tool import segments_of, segments_of_many
from mediasrv.vad import (
    SegmenterConfig,
    SpeechSegmenter,
    VadBatch,
    VadHub,
    VadModel,
    VadResult,
    VoiceActivityDetector,
    default_model,
)
from mediasrv.vad.features import N_FEATURES, FeatureBank
from mediasrv.vad.model import DEFAULT_WEIGHTS
from mediasrv.vad_shell import BatchedVad
from tests.core.signals import FRAME, RATE, pink, scale_to_db, scene, speech_like, to_int16, white

REAL = shared_root() / "corpus" / "real"


def run_ulaw(vad: VoiceActivityDetector, pcm: NDArray[np.int16]) -> list[VadResult]:
    ulaw = array_to_ulaw(pcm)
    return [vad.process_ulaw(ulaw[i : i + FRAME]) for i in range(0, len(ulaw) - FRAME + 1, FRAME)]


# ----------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("noise_kind", "snr_db"), [("white", 10.0), ("pink", 10.0), ("pink", 5.0)])
def test_speech_in_noise_is_found_and_noise_is_not(noise_kind: str, snr_db: float) -> None:
    rng = np.random.default_rng(7)
    make = white if noise_kind == "white" else pink
    pcm = scene(make(5 * RATE, rng), speech_like(1.5, rng), snr_db, start_s=2.0)
    active = np.array([r.active for r in run_ulaw(VoiceActivityDetector(), pcm)])
    # 2 s of noise, 1.5 s of speech-like sound from frame 100 to 175, then 1.5 s of noise
    assert active[105:170].mean() > 0.9
    assert active[:50].mean() < 0.05  # after a short warm-up the line noise is not speech
    assert not active[200:].any()


def test_digital_silence_is_never_speech() -> None:
    results = run_ulaw(VoiceActivityDetector(), np.zeros(3 * RATE, dtype=np.int16))
    assert not any(r.speech or r.active for r in results)
    assert max(r.prob for r in results) < 0.2


@pytest.mark.parametrize("noise_kind", ["white", "pink"])
def test_stationary_noise_alone_is_not_speech(noise_kind: str) -> None:
    rng = np.random.default_rng(3)
    noise = (white if noise_kind == "white" else pink)(6 * RATE, rng)
    results = run_ulaw(VoiceActivityDetector(), to_int16(scale_to_db(noise, 55.0)))
    assert np.mean([r.active for r in results[25:]]) < 0.05


def test_onset_is_decided_fast_and_backdated() -> None:
    """The turn detector must know within ~100 ms; the estimate lands near the true start."""
    rng = np.random.default_rng(5)
    pcm = scene(pink(4 * RATE, rng), speech_like(1.0, rng), 20.0, start_s=1.5)
    results = run_ulaw(VoiceActivityDetector(), pcm)
    onsets = [(i, r.onset_ms) for i, r in enumerate(results) if r.onset_ms is not None]
    assert onsets, "speech never started"
    frame, onset_ms = onsets[0]
    decided_ms = (frame + 1) * 20
    assert 1500 <= decided_ms <= 1600
    assert onset_ms is not None and abs(onset_ms - 1500) <= 60


def test_offset_is_reported_at_the_end_of_speech() -> None:
    rng = np.random.default_rng(6)
    pcm = scene(white(4 * RATE, rng), speech_like(1.0, rng), 15.0, start_s=1.0)
    results = run_ulaw(VoiceActivityDetector(), pcm)
    offsets = [(i, r.offset_ms) for i, r in enumerate(results) if r.offset_ms is not None]
    assert len(offsets) == 1
    frame, offset_ms = offsets[0]
    # where it ends in real speech is checked on real recordings (below); here, the bookkeeping
    assert offset_ms is not None and 1000 < offset_ms <= 2100
    assert (frame + 1) * 20 - offset_ms == SegmenterConfig().hangover_frames * 20


def test_process_pcm_matches_process_ulaw() -> None:
    rng = np.random.default_rng(1)
    pcm = to_int16(scale_to_db(speech_like(1.0, rng) + 0.1 * white(RATE, rng), 60.0))
    ulaw = array_to_ulaw(pcm)
    a, b = VoiceActivityDetector(), VoiceActivityDetector()
    for i in range(0, len(ulaw), FRAME):
        assert a.process_ulaw(ulaw[i : i + FRAME]) == b.process_pcm(ulaw_to_array(ulaw[i : i + FRAME]))


def test_reset_forgets_the_call() -> None:
    rng = np.random.default_rng(2)
    pcm = scene(pink(2 * RATE, rng), speech_like(0.8, rng), 10.0, start_s=0.5)
    vad = VoiceActivityDetector()
    first = run_ulaw(vad, pcm)
    vad.reset()
    assert run_ulaw(vad, pcm) == first


def test_wrong_frame_size_raises_and_changes_nothing() -> None:
    rng = np.random.default_rng(8)
    pcm = scene(pink(2 * RATE, rng), speech_like(0.8, rng), 10.0, start_s=0.5)
    clean, poked = VoiceActivityDetector(), VoiceActivityDetector()
    ulaw = array_to_ulaw(pcm)
    for i in range(0, len(ulaw), FRAME):
        with pytest.raises(CodecError):
            poked.process_ulaw(ulaw[i : i + FRAME - 1])
        with pytest.raises(CodecError):
            poked.process_pcm(np.zeros(FRAME * 2, dtype=np.int16))
        assert poked.process_ulaw(ulaw[i : i + FRAME]) == clean.process_ulaw(ulaw[i : i + FRAME])


# ----------------------------------------------------------------------------- batching


def _streams(count: int, seconds: float = 3.0) -> list[bytes]:
    out = []
    for k in range(count):
        rng = np.random.default_rng(100 + k)
        make = white if k % 2 else pink
        pcm = scene(make(int(seconds * RATE), rng), speech_like(1.0, rng), 5.0 + 3 * k, start_s=0.3 + 0.1 * k)
        out.append(array_to_ulaw(pcm))
    return out


def test_batch_gives_each_stream_its_own_verdicts() -> None:
    """Streams run together in one batch get the probabilities they get alone."""
    streams = _streams(6)
    alone = []
    for ulaw in streams:
        vad = VoiceActivityDetector()
        alone.append([vad.process_ulaw(ulaw[i : i + FRAME]).prob for i in range(0, len(ulaw), FRAME)])
    hub = VadHub(VadBatch(capacity=2))  # grows while detectors are added
    dets = [hub.detector() for _ in streams]
    together: list[list[float]] = [[] for _ in streams]
    for i in range(0, len(streams[0]), FRAME):
        for k, (det, ulaw) in enumerate(zip(dets, streams, strict=True)):
            hub.submit(det, ulaw[i : i + FRAME], lambda r, k=k: together[k].append(r.prob))
        assert hub.run() == len(streams)
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_hub_runs_queued_frames_of_one_stream_in_order() -> None:
    (ulaw,) = _streams(1)
    hub = VadHub()
    det = hub.detector()
    got: list[float] = []
    for i in range(0, 10 * FRAME, FRAME):
        hub.submit(det, ulaw[i : i + FRAME], lambda r: got.append(r.prob))
    assert hub.run() == 10
    ref = VoiceActivityDetector()
    want = [ref.process_ulaw(ulaw[i : i + FRAME]).prob for i in range(0, 10 * FRAME, FRAME)]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_failing_callback_does_not_starve_the_others() -> None:
    streams = _streams(3, seconds=2.0)
    hub = VadHub()
    dets = [hub.detector() for _ in streams]
    got: list[int] = []

    def boom(_: VadResult) -> None:
        raise RuntimeError("call 0 broke")

    hub.submit(dets[0], streams[0][:FRAME], boom)
    hub.submit(dets[1], streams[1][:FRAME], lambda r: got.append(1))
    hub.submit(dets[2], streams[2][:FRAME], lambda r: got.append(2))
    with pytest.raises(RuntimeError, match="call 0 broke"):
        hub.run()
    assert got == [1, 2]
    assert hub.pending == 0


def test_hub_rejects_a_short_frame_before_queueing() -> None:
    hub = VadHub()
    with pytest.raises(CodecError):
        hub.submit(hub.detector(), b"\xff" * 80, lambda r: None)
    assert hub.pending == 0


def test_closed_slots_are_reused_with_fresh_state() -> None:
    batch = VadBatch(capacity=1)
    (ulaw,) = _streams(1)
    first = VoiceActivityDetector(batch=batch)
    for i in range(0, len(ulaw), FRAME):
        first.process_ulaw(ulaw[i : i + FRAME])
    first.close()
    second = VoiceActivityDetector(batch=batch)
    assert second.slot == first.slot
    fresh = VoiceActivityDetector()
    for i in range(0, 20 * FRAME, FRAME):
        assert second.process_ulaw(ulaw[i : i + FRAME]) == fresh.process_ulaw(ulaw[i : i + FRAME])


def test_release_drops_queued_frames_and_frees_the_slot_once() -> None:
    streams = _streams(2, seconds=2.0)
    hub = VadHub(VadBatch(capacity=2))
    ending, staying = hub.detector(), hub.detector()
    got: list[str] = []
    for i in range(0, 3 * FRAME, FRAME):
        hub.submit(ending, streams[0][i : i + FRAME], lambda r: got.append("ended call"))
        hub.submit(staying, streams[1][i : i + FRAME], lambda r: got.append("live call"))
    assert hub.release(ending) == 3
    ending.close()  # a second close must not free the slot again
    newcomer = hub.detector()
    assert newcomer.slot == ending.slot
    assert hub.detector().slot != newcomer.slot  # freed once: the next call gets a new slot
    assert hub.run() == 3
    assert got == ["live call"] * 3


async def test_batched_vad_runs_every_call_in_one_step_per_loop_iteration() -> None:
    streams = _streams(4, seconds=2.0)
    shared = BatchedVad()
    dets = [shared.detector() for _ in streams]
    got: list[list[float]] = [[] for _ in streams]
    frames = len(streams[0]) // FRAME
    for i in range(frames):
        for k, det in enumerate(dets):
            shared.submit(det, streams[k][i * FRAME : (i + 1) * FRAME], lambda r, k=k: got[k].append(r.prob))
        assert all(len(g) == i for g in got)  # verdicts come in the next iteration, not now
        await asyncio.sleep(0)
        assert all(len(g) == i + 1 for g in got)
    assert shared.flushes == frames
    assert shared.hub.frames == frames * len(streams)
    for k, ulaw in enumerate(streams):
        ref = VoiceActivityDetector()
        want = [ref.process_ulaw(ulaw[i * FRAME : (i + 1) * FRAME]).prob for i in range(frames)]
        np.testing.assert_allclose(got[k], want, atol=1e-4)


def test_feature_bank_rows_are_independent() -> None:
    bank = FeatureBank(3)
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((3, FRAME)).astype(np.float32) * 1000
    all_rows = bank.compute(np.arange(3), frames)
    solo = FeatureBank(3)
    one = solo.compute(np.array([1]), frames[1:2])
    assert all_rows.shape == (3, N_FEATURES)
    np.testing.assert_allclose(all_rows[1], one[0], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- segmenter


def _push(seg: SpeechSegmenter, probs: Sequence[float]) -> list[VadResult]:
    return [seg.push(p) for p in probs]


def test_segmenter_needs_a_run_to_start_and_a_gap_to_end() -> None:
    cfg = SegmenterConfig(
        on_threshold=0.5,
        off_threshold=0.3,
        voice_threshold=0.3,
        rise_threshold=0.2,
        onset_frames=2,
        hangover_frames=3,
    )
    seg = SpeechSegmenter(cfg)
    res = _push(seg, [0.1, 0.9, 0.1, 0.1, 0.3, 0.6, 0.8, 0.4, 0.2, 0.2, 0.2, 0.1])
    assert [r.active for r in res] == [False] * 6 + [True] * 4 + [False] * 2
    # a lone strong frame (a click) did not start speech
    assert res[1].speech and not res[1].active
    # the rise started at frame 4 (0.3 >= rise threshold): the onset is backdated to it
    assert res[6].onset_ms == 80
    # inside speech 0.4 is still speech (off threshold 0.3); the gap starts at frame 8
    assert res[7].speech
    assert res[10].offset_ms == 160  # end of frame 7, the last speech frame
    assert seg.flush() is None


def test_segmenter_decay_holds_the_segment_but_is_not_voice() -> None:
    """Frames between the off and voice thresholds (the network's decay after the last word)
    keep the segment open and move its end estimate, but are not reported as voice: the turn
    detector counts its silence from the last frame that is."""
    cfg = SegmenterConfig(off_threshold=0.35, voice_threshold=0.5, hangover_frames=3)
    seg = SpeechSegmenter(cfg)
    res = _push(seg, [0.9, 0.9, 0.9, 0.45, 0.4, 0.1, 0.45, 0.1, 0.1, 0.1])
    assert [r.speech for r in res[:5]] == [True, True, True, False, False]
    # 0.45 and 0.4 reset the hangover; it ends 3 frames under 0.35 after the 0.45 at frame 6
    assert [r.active for r in res] == [False] + [True] * 8 + [False]
    assert res[9].offset_ms == 140  # end of frame 6, the last frame over the off threshold


def test_segmenter_backdating_is_bounded() -> None:
    cfg = SegmenterConfig(max_backdate_ms=100)
    seg = SpeechSegmenter(cfg)
    res = _push(seg, [0.3] * 20 + [0.9, 0.9])  # a long weak rise, then speech
    onset = res[-1].onset_ms
    assert onset == 22 * 20 - 100


def test_segmenter_flush_ends_open_speech() -> None:
    seg = SpeechSegmenter()
    _push(seg, [0.9] * 5)
    assert seg.flush() == 100
    assert not seg.active


# ----------------------------------------------------------------------------- model file


def test_weights_missing_an_array_are_refused(tmp_path: Path) -> None:
    weights = dict(np.load(DEFAULT_WEIGHTS))
    del weights["gru_w_hh"]
    path = tmp_path / "broken.npz"
    np.savez(path, **weights)
    with pytest.raises(ConfigError, match="gru_w_hh"):
        VadModel.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        VadModel.load(tmp_path / "missing.npz")


def test_shipped_model_says_where_it_came_from() -> None:
    assert "bench/vad_lab/train.py" in default_model().provenance


# ----------------------------------------------------------------------------- real speech


@pytest.mark.skipif(not (REAL / "labels.json").exists(), reason="real-speech corpus not available")
def test_real_speech_in_noise_is_found_without_dropouts() -> None:
    """One real talker per line condition: frames right, no gap inside continuous speech."""
    labels = json.loads((REAL / "labels.json").read_text())["files"]
    picked = {}
    for lab in labels:
        snr = lab["noise"]["snr_db"]
        cond = f"{lab['noise']['type']}{'' if snr is None else snr}"
        if lab["source"] == "codec2:forig" and cond in ("none", "pink5", "white5", "car0", "loss3"):
            picked[cond] = lab
    assert len(picked) == 5
    audio = [read_ulaw_8k(REAL / lab["file"]) for lab in picked.values()]
    onsets: list[int] = []
    ends_est: list[int] = []
    ends_decided: list[int] = []
    for lab, segs in zip(picked.values(), segments_of_many(audio), strict=True):
        n = lab["duration_ms"] // 10
        truth = np.zeros(n, bool)
        found = np.zeros(n, bool)
        for a, b in lab["speech_segments_ms"]:
            truth[a // 10 : b // 10] = True
        for s in segs:
            found[s.start_ms // 10 : s.end_ms // 10] = True
        assert (truth == found).mean() >= 0.88, lab["file"]
        for prev, nxt in zip(segs, segs[1:], strict=False):
            gap_inside_speech = any(
                a < prev.end_ms and nxt.start_ms < b for a, b in lab["speech_segments_ms"]
            )
            assert not (gap_inside_speech and nxt.start_ms - prev.end_ms >= 200), lab["file"]
        true_segs = lab["speech_segments_ms"]
        for i, (a, b) in enumerate(true_segs):
            isolated_start = i == 0 or a - true_segs[i - 1][1] >= 500
            isolated_end = i + 1 == len(true_segs) or true_segs[i + 1][0] - b >= 500
            if isolated_start:
                starts = [s.start_decided_ms for s in segs if a - 200 <= s.start_decided_ms <= b]
                onsets.append(min(starts) - a)
            if isolated_end:
                ends = [s for s in segs if b - 300 <= s.end_decided_ms <= b + 1000]
                ends_est.append(ends[0].end_ms - b)
                ends_decided.append(ends[0].end_decided_ms - b)
    # boundaries: decided soon after the truth, estimated near it (the targets)
    assert np.median(onsets) <= 100
    assert np.median(ends_decided) <= 250
    assert abs(np.median(ends_est)) <= 120


@pytest.mark.skipif(not (REAL / "labels.json").exists(), reason="real-speech corpus not available")
def test_batched_segments_equal_the_single_stream_tool() -> None:
    labels = json.loads((REAL / "labels.json").read_text())["files"][:3]
    audio = [read_ulaw_8k(REAL / lab["file"]) for lab in labels]
    assert segments_of_many(audio) == [segments_of(a) for a in audio]
