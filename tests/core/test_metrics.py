"""Metrics: per-instance registries, the exposition text, and the per-turn JSON log line."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mediasrv.call import CallStats
from mediasrv.metrics import FRAME_STAGES, LATENCY_BUCKETS_MS, TURN_LOG_KEYS, Metrics, turn_log_line
from mediasrv.timing import TurnSummary, TurnTimeline


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered exposition, keyed by (name, sorted labels)."""
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def turn(**kw: object) -> TurnSummary:
    base: dict[str, object] = {"call_id": "c1", "turn": 1}
    base.update(kw)
    return TurnSummary(**base)  # type: ignore[arg-type]


def test_observed_turn_stages_appear_in_the_histograms() -> None:
    m = Metrics()
    m.observe_turn(
        turn(
            eot_ms=240.0,
            llm_ttft_ms=180.5,
            tts_ttfb_ms=95.0,
            first_frame_ms=520.0,
            speculative="hit",
            llm_requests=1,
        )
    )
    m.observe_turn(
        turn(
            turn=2,
            eot_ms=310.0,
            first_frame_ms=1200.0,
            speculative="miss",
            barge_in=True,
            llm_requests=3,
            side_requests=1,
        )
    )
    s = samples(m)
    assert s[("mediasrv_turn_stage_ms_count", (("stage", "eot"),))] == 2
    assert s[("mediasrv_turn_stage_ms_sum", (("stage", "eot"),))] == pytest.approx(550.0)
    assert s[("mediasrv_turn_stage_ms_sum", (("stage", "llm_ttft"),))] == pytest.approx(180.5)
    # A stage that did not happen is not observed (not a zero).
    assert s[("mediasrv_turn_stage_ms_count", (("stage", "stt_final"),))] == 0
    assert s[("mediasrv_turn_e2e_ms_count", ())] == 2
    assert s[("mediasrv_turn_e2e_ms_sum", ())] == pytest.approx(1720.0)
    # 520 falls under the 600 ms bucket edge, 1200 does not.
    assert s[("mediasrv_turn_e2e_ms_bucket", (("le", "600.0"),))] == 1
    assert s[("mediasrv_turn_e2e_ms_bucket", (("le", "+Inf"),))] == 2
    assert s[("mediasrv_speculative_total", (("result", "hit"),))] == 1
    assert s[("mediasrv_speculative_total", (("result", "miss"),))] == 1
    assert s[("mediasrv_speculative_total", (("result", "cancelled"),))] == 0
    assert s[("mediasrv_barge_ins_total", ())] == 1
    # what the turns cost: reply streams (restarts included) and side calls
    assert s[("mediasrv_llm_requests_total", (("kind", "reply"),))] == 4
    assert s[("mediasrv_llm_requests_total", (("kind", "side"),))] == 1


def test_buckets_cover_10ms_to_10s_with_the_target_as_an_edge() -> None:
    assert LATENCY_BUCKETS_MS[0] == 10.0
    assert LATENCY_BUCKETS_MS[-1] == 10000.0
    assert 600.0 in LATENCY_BUCKETS_MS
    assert list(LATENCY_BUCKETS_MS) == sorted(LATENCY_BUCKETS_MS)


def test_call_lifecycle_counters_and_gauge() -> None:
    m = Metrics()
    m.call_started()
    m.call_started()
    m.webhook()
    assert samples(m)[("mediasrv_active_calls", ())] == 2
    m.call_ended(CallStats(frames_in=500, frames_out=420, malformed=2, late_frames=3))
    m.call_ended(failed=True, frames_in=7)
    m.reconnect("soniox")
    m.reconnect("soniox")
    m.reconnect("elevenlabs")
    s = samples(m)
    assert s[("mediasrv_active_calls", ())] == 0
    assert s[("mediasrv_calls_total", ())] == 2
    assert s[("mediasrv_calls_failed_total", ())] == 1
    assert s[("mediasrv_webhooks_total", ())] == 1
    assert s[("mediasrv_media_frames_in_total", ())] == 507
    assert s[("mediasrv_media_frames_out_total", ())] == 420
    assert s[("mediasrv_media_frames_malformed_total", ())] == 2
    assert s[("mediasrv_frames_late_total", ())] == 3
    assert s[("mediasrv_provider_reconnects_total", (("provider", "soniox"),))] == 2
    assert s[("mediasrv_provider_reconnects_total", (("provider", "elevenlabs"),))] == 1


def test_frames_a_per_frame_step_dropped_are_counted_by_stage_from_zero() -> None:
    m = Metrics()
    for stage in FRAME_STAGES:  # exported before the first failure, so dashboards see them
        assert samples(m)[("mediasrv_frames_dropped_total", (("stage", stage),))] == 0
    m.frame_dropped("echo")
    m.frame_dropped("echo")
    m.frame_dropped("turns")
    s = samples(m)
    assert s[("mediasrv_frames_dropped_total", (("stage", "echo"),))] == 2
    assert s[("mediasrv_frames_dropped_total", (("stage", "turns"),))] == 1
    assert s[("mediasrv_frames_dropped_total", (("stage", "vad"),))] == 0
    assert m.count("mediasrv_frames_dropped_total", stage="echo") == 2


def test_count_reads_the_current_value_of_a_series() -> None:
    m = Metrics()
    assert m.count("mediasrv_calls_total") == 0
    m.call_started()
    m.call_ended(CallStats(frames_in=5, malformed=2), failed=True)
    m.reconnect("soniox")
    assert m.count("mediasrv_calls_total") == 1
    assert m.count("mediasrv_calls_failed_total") == 1
    assert m.count("mediasrv_media_frames_in_total") == 5
    assert m.count("mediasrv_media_frames_malformed_total") == 2
    assert m.count("mediasrv_active_calls") == 0
    assert m.count("mediasrv_provider_reconnects_total", provider="soniox") == 1
    assert m.count("mediasrv_provider_reconnects_total", provider="openai") == 0


def test_two_instances_do_not_collide() -> None:
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    a.call_started()
    a.observe_turn(turn(first_frame_ms=400.0))
    sa, sb = samples(a), samples(b)
    assert sa[("mediasrv_calls_total", ())] == 1
    assert sb[("mediasrv_calls_total", ())] == 0
    assert sa[("mediasrv_turn_e2e_ms_count", ())] == 1
    assert sb[("mediasrv_turn_e2e_ms_count", ())] == 0


def test_unknown_speculative_result_is_refused() -> None:
    with pytest.raises(ValueError, match="speculative"):
        Metrics().speculative_result("maybe")


def test_turn_log_line_has_stable_keys_and_round_trips() -> None:
    tl = TurnTimeline("call-7", 3)
    tl.text, tl.reply, tl.speculative = "book me for tuesday", "Sure, Tuesday it is.", "hit"
    for stage, t in (
        ("speech_end", 10.0),
        ("eot", 10.25),
        ("llm_start", 10.1),
        ("llm_ttft", 10.3),
        ("tts_first_text", 10.35),
        ("tts_ttfb", 10.43),
        ("first_frame", 10.47),
        ("tts_done", 10.9),
    ):
        tl.stamp(stage, t)
    summary = tl.summary()
    assert summary.tts_total_ms == pytest.approx(550.0)  # first text -> last audio
    assert summary.playback_ms == pytest.approx(40.0)  # first audio (after the eot) -> first frame
    held = TurnTimeline("call-7", 4)  # a speculative hit: audio came before the end of turn
    for stage, t in (("speech_end", 1.0), ("tts_ttfb", 1.2), ("eot", 1.3), ("first_frame", 1.301)):
        held.stamp(stage, t)
    assert held.summary().playback_ms == pytest.approx(1.0)  # from the end of turn, not the audio
    line = turn_log_line(summary, profile="fast")
    assert "\n" not in line
    obj = json.loads(line)
    assert tuple(obj) == TURN_LOG_KEYS
    assert obj["event"] == "turn"
    assert obj["profile"] == "fast"
    assert obj["first_frame_ms"] == pytest.approx(470.0)
    assert obj["stt_final_ms"] is None
    # A partial turn keeps the same keys, in the same order.
    partial = json.loads(turn_log_line(turn()))
    assert tuple(partial) == TURN_LOG_KEYS
    assert partial["first_frame_ms"] is None and partial["profile"] is None
