"""``mediasrv report``: tables and plots from JSON-lines logs and SQLite call records."""

from __future__ import annotations

import csv
import random
import sqlite3
from pathlib import Path

import msgspec
import numpy as np
import pytest

from mediasrv.metrics import turn_log_line
from mediasrv.records import CallStart, RecordWriter
from mediasrv.report import load_turns, main, run_report
from mediasrv.report_plots import PLOTS as PLOT_FUNCTIONS
from mediasrv.timing import TurnSummary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("stages_per_turn.png", "e2e_cdf.png", "stages_box.png")

# (eot, llm_ttft, tts_ttfb, rest) means in ms for each emulator profile.
PROFILE_MEANS = {"fast": (230.0, 140.0, 80.0, 40.0), "typical": (380.0, 320.0, 160.0, 60.0)}


def make_turns(profile: str, calls: int, turns: int, seed: int) -> list[TurnSummary]:
    """Plausible turns: stages drawn around the profile's means, some partial, one without audio."""
    rng = random.Random(seed)
    eot, ttft, ttfb, rest = PROFILE_MEANS[profile]
    out = []
    for c in range(calls):
        for t in range(1, turns + 1):
            parts = [max(5.0, rng.gauss(m, m * 0.25)) for m in (eot, ttft, ttfb, rest)]
            hit = rng.random() < 0.4
            # A speculative hit starts the LLM before the end-of-turn decision: the stages overlap.
            e2e = sum(parts) - (0.6 * parts[1] if hit else 0.0)
            s = TurnSummary(
                call_id=f"{profile}-call-{c}",
                turn=t,
                text=f"caller line {t}",
                reply="ok",
                speculative="hit" if hit else "miss",
                barge_in=(t == 2 and c == 0),
                eot_ms=round(parts[0], 1),
                stt_final_ms=round(parts[0] * 0.8, 1),
                llm_ttft_ms=round(parts[1], 1),
                llm_total_ms=round(parts[1] * 3.5, 1),
                tts_ttfb_ms=round(parts[2], 1),
                first_frame_ms=round(e2e, 1),
                extraction_ms=round(rng.uniform(300, 700), 1) if t % 2 == 0 else None,
                llm_requests=1 if hit else rng.choice((1, 2, 3)),
                side_requests=1 if t % 2 == 0 else 0,
            )
            if t == turns and c == 0:
                s = msgspec.structs.replace(s, tts_ttfb_ms=None, first_frame_ms=None)  # no audio came
            out.append(s)
    return out


def e2e_values(turns: list[TurnSummary]) -> list[float]:
    return [t.first_frame_ms for t in turns if t.first_frame_ms is not None]


def check_pngs(out: Path) -> None:
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 15_000, (name, len(data))  # a real chart, not an empty canvas


def test_report_from_json_lines(tmp_path: Path) -> None:
    fast = make_turns("fast", calls=3, turns=5, seed=1)
    typical = make_turns("typical", calls=3, turns=5, seed=2)
    log = tmp_path / "turns.jsonl"
    lines = ["mediasrv demo: mode=echo profile=fast calls=3", "this line is not JSON"]
    lines += [f"2025-01-01 12:00:00 INFO mediasrv.call: {turn_log_line(s, profile='fast')}" for s in fast]
    lines += [turn_log_line(s, profile="typical") for s in typical]
    log.write_text("\n".join(lines) + "\n")

    result = run_report(str(log), str(tmp_path / "out"))

    assert result.turns == 30 and result.calls == 6
    assert result.profiles == ["fast", "typical"]
    assert result.skipped_lines == 2
    for profile, turns in (("fast", fast), ("typical", typical), ("all", fast + typical)):
        row = result.stat("e2e", profile)
        assert row is not None
        xs = e2e_values(turns)
        assert row.n == len(xs) == len(turns) - (2 if profile == "all" else 1)
        assert row.p50 == pytest.approx(float(np.percentile(xs, 50)))
        assert row.p95 == pytest.approx(float(np.percentile(xs, 95)))
        assert row.mean == pytest.approx(float(np.mean(xs)))
    extraction = result.stat("extraction", "fast")
    assert extraction is not None
    assert extraction.n == sum(t.extraction_ms is not None for t in fast)
    out = tmp_path / "out"
    check_pngs(out)
    md = (out / "report.md").read_text()
    assert "| fast | **e2e** |" in md and "stages_per_turn.png" in md
    # the outcomes table says what the turns cost in LLM requests
    reqs = [t.llm_requests for t in fast]
    sides = sum(t.side_requests for t in fast)
    assert f"| {sum(reqs) / len(reqs):.2f}, {max(reqs)} | {sides} |" in md
    with (out / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    e2e_all = next(r for r in rows if r["profile"] == "all" and r["stage"] == "e2e")
    assert float(e2e_all["p50_ms"]) == pytest.approx(
        float(np.percentile(e2e_values(fast + typical), 50)), abs=1e-3
    )


def test_report_from_sqlite_turns_table(tmp_path: Path) -> None:
    turns = make_turns("typical", calls=4, turns=6, seed=3)
    db = tmp_path / "records.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE calls (call_id TEXT PRIMARY KEY, profile TEXT)")
    con.execute("CREATE TABLE turns (call_id TEXT, idx INTEGER, summary TEXT)")
    con.executemany("INSERT INTO calls VALUES (?, ?)", [(f"typical-call-{c}", "typical") for c in range(4)])
    con.executemany(
        "INSERT INTO turns VALUES (?, ?, ?)",
        [(t.call_id, t.turn, msgspec.json.encode(t).decode()) for t in turns],
    )
    con.commit()
    con.close()

    result = run_report(str(db), str(tmp_path / "out"))

    assert result.turns == 24 and result.profiles == ["typical"]
    row = result.stat("e2e", "typical")
    assert row is not None
    assert row.p50 == pytest.approx(float(np.percentile(e2e_values(turns), 50)))
    eot = result.stat("eot", "typical")
    assert eot is not None
    assert eot.p95 == pytest.approx(float(np.percentile([t.eot_ms for t in turns], 95)))
    check_pngs(tmp_path / "out")


def test_sqlite_without_profiles_is_one_group(tmp_path: Path) -> None:
    turns = make_turns("fast", calls=2, turns=3, seed=4)
    db = tmp_path / "bare.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE turns (call_id TEXT, idx INTEGER, summary TEXT)")
    con.executemany(
        "INSERT INTO turns VALUES (?, ?, ?)",
        [(t.call_id, t.turn, msgspec.json.encode(t).decode()) for t in turns],
    )
    con.commit()
    con.close()
    rows, skipped = load_turns(str(db))
    assert [r.summary for r in rows] == turns and skipped == 0
    assert {r.profile for r in rows} == {None}
    result = run_report(str(db), str(tmp_path / "out"))
    assert result.profiles == []
    assert {s.profile for s in result.stats} == {"all"}


def test_demo_style_lines_and_summary_profile(tmp_path: Path) -> None:
    log = tmp_path / "demo.out"
    log.write_text(
        '{"call": 1, "turn": 1, "text": "hello", "e2e_ms": 512.5,'
        ' "stages": {"eot": 240.0, "llm_ttft": 150.0}}\n'
        '{"call": 1, "turn": 2, "text": "bye", "e2e_ms": null, "stages": {}}\n'
        '{"summary": {"call_id": "x", "turn": 3, "first_frame_ms": 700.0}}\n'
        '{"profile": "fast", "calls": 1, "turns": 3, "mode": "echo", "e2e_ms": {"p50": 512.5, "p95": 512.5},'
        ' "stages_ms": {}}\n'
    )
    rows, skipped = load_turns(str(log))
    assert skipped == 1  # the final summary line
    assert [r.summary.first_frame_ms for r in rows] == [512.5, None, 700.0]
    assert rows[0].summary.call_id == "1" and rows[0].summary.eot_ms == 240.0
    assert {r.profile for r in rows} == {"fast"}


def test_main_prints_the_table_and_reports_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "t.jsonl"
    log.write_text("\n".join(turn_log_line(s) for s in make_turns("fast", 2, 4, seed=5)) + "\n")
    assert main([str(log), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "| all | **e2e** |" in printed and "8 turns, 2 calls" in printed
    empty = tmp_path / "empty.jsonl"
    empty.write_text("nothing here\n")
    assert main([str(empty), "--out", str(tmp_path / "e")]) == 1
    assert (tmp_path / "e" / "e2e_cdf.png").read_bytes()[:8] == PNG_MAGIC
    assert main([str(tmp_path / "missing.db"), "--out", str(tmp_path / "m")]) == 2


def test_report_from_the_record_writers_database(tmp_path: Path) -> None:
    turns = make_turns("fast", calls=2, turns=4, seed=6)
    db = tmp_path / "mediasrv.db"
    writer = RecordWriter(db)
    writer.start()
    for call_id in sorted({t.call_id for t in turns}):
        assert writer.submit(CallStart(call_id=call_id, started_at=1.7e9, agent="demo"))
    for t in turns:
        assert writer.submit(t)
    writer.close()
    assert writer.written == len(turns) + 2

    result = run_report(str(db), str(tmp_path / "out"))

    assert result.turns == len(turns) and result.calls == 2
    row = result.stat("llm_ttft")
    assert row is not None
    assert row.p50 == pytest.approx(float(np.percentile([t.llm_ttft_ms for t in turns], 50)))
    check_pngs(tmp_path / "out")


def test_the_report_draws_every_plot_of_report_plots(tmp_path: Path) -> None:
    assert tuple(name for name, _ in PLOT_FUNCTIONS) == PLOTS
    path = tmp_path / "turns.jsonl"
    path.write_text("\n".join(turn_log_line(t) for t in make_turns("fast", 2, 4, seed=5)) + "\n")
    result = run_report(str(path), str(tmp_path / "out"))
    assert [n for n in result.files if n.endswith(".png")] == list(PLOTS)
