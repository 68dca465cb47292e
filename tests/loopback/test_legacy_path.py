"""Smoke test of the latency lab's legacy path (``bench/e2e``): one call, one turn, real sockets.

The legacy behaviour runs inside the real daemon against the real emulators on a tiny
zero-latency profile, and must go the whole way: Soniox ``<end>`` -> extraction ->
transition -> reply -> whole-sentence TTS (pcm_16000) -> ffmpeg MP3 -> HTTP -> Call Control
``playback_start`` -> the Telnyx emulator fetched the MP3 and started playing it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory of the repository, not a package install
    sys.path.insert(0, str(ROOT))

from bench.e2e.run import ProfileBench, summarise  # noqa: E402
from mediasrv.profiles import instant_profile  # noqa: E402

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH (apt-get install ffmpeg)"
)

ZERO = instant_profile(
    "zero",
    stt_endpoint_silence_ms=200,
    llm_tokens_per_s=1000.0,
    extraction_ms=0,
    transition_ms=0,
    tts_chunk_ms=100,
    tts_realtime_factor=100.0,
)


async def test_legacy_path_completes_one_turn_through_ffmpeg_and_rest_playback() -> None:
    bench = ProfileBench(
        "fast", calls=1, turns=1, paths=("legacy",), profile_override=ZERO, greet=False, turn_timeout_s=15.0
    )
    run = await bench.run()

    (turn,) = run.turns["legacy"]
    assert run.call_errors["legacy"] == []
    assert turn.error is None, turn.error
    # How long it took is the bench's business (bench/e2e); here: it produced a measured turn.
    assert turn.e2e_ms is not None and turn.e2e_ms > 0
    # Every stage of the legacy turn happened, the side calls and the blocking DB write included.
    for stage in (
        "endpoint_wait",
        "extraction",
        "transition",
        "db_write",
        "reply_ttft",
        "tts_sentence",
        "file_ffmpeg",
        "rest_playback",
    ):
        assert turn.stages[stage] is not None, stage

    demo = bench.demo
    assert demo is not None
    # The LLM calls were made in the legacy order, one after the other.
    purposes = [r.purpose for r in sorted(demo.llm.requests, key=lambda r: r.received_at)]
    assert purposes[:3] == ["extraction", "transition", "reply"]
    # TTS went through the single-context socket in pcm_16000.
    sessions = [s for s in demo.eleven.sessions if not s.multi]
    assert sessions and all(s.query.get("output_format") == "pcm_16000" for s in sessions)
    # The emulator fetched a real MP3 over HTTP (its MPEG frames give it a duration) and played it.
    (call,) = demo.telnyx.calls.values()
    assert any(c.action == "playback_start" and c.status == 200 for c in call.commands)
    first = call.playbacks[0]
    assert first.media_url is not None and first.media_url.startswith("http://127.0.0.1:")
    assert first.media_url.endswith(".mp3")
    assert first.fetch_status == 200 and first.size_bytes > 0
    assert first.duration_s is not None and first.duration_s > 0.2
    assert first.started_at is not None

    summary = summarise(run)
    assert summary.legacy is not None and summary.legacy.failed == 0 and summary.mediasrv is None
    # The LLM cost of the phase is what the emulator saw: three calls for the one turn.
    assert run.llm_requests["legacy"] == len(demo.llm.requests) >= 3
    assert summary.legacy.llm_requests_per_turn == len(demo.llm.requests)
