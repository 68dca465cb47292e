"""RecordWriter / RecordReader: non-blocking submits, flush on close, bounded queue, read-back."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mediasrv.errors import ConfigError
from mediasrv.records import (
    CallEnd,
    CallStart,
    NodeEntered,
    Record,
    RecordReader,
    RecordWriter,
    TranscriptLine,
    VariableSet,
)
from mediasrv.timing import TurnSummary
from mediasrv.tools.calls_tool import main as calls_main

T0 = 1_750_000_000.0


def call_records(call_id: str, turns: int = 3) -> list[Record]:
    out: list[Record] = [
        CallStart(
            call_id=call_id, started_at=T0, agent="sales", from_number="+15550001", to_number="+15550002"
        )
    ]
    out.append(NodeEntered(call_id=call_id, t=0.0, node="greet"))
    for i in range(turns):
        out.append(TranscriptLine(call_id=call_id, t=2.0 * i + 1.0, role="caller", text=f"question {i}"))
        out.append(TranscriptLine(call_id=call_id, t=2.0 * i + 1.5, role="agent", text=f"answer {i}"))
        out.append(
            TurnSummary(
                call_id=call_id,
                turn=i + 1,
                text=f"question {i}",
                reply=f"answer {i}",
                eot_ms=200.0 + i,
                llm_ttft_ms=300.0,
                first_frame_ms=600.0 + 100 * i,
                speculative="hit",
            )
        )
    out.append(NodeEntered(call_id=call_id, t=3.0, node="qualify"))
    out.append(VariableSet(call_id=call_id, name="zip", value="02110"))
    out.append(VariableSet(call_id=call_id, name="seats", value=4))
    out.append(CallEnd(call_id=call_id, ended_at=T0 + 30, outcome="completed", counters={"barge_ins": 1}))
    return out


def test_round_trip_reads_back_exactly_what_was_accepted(tmp_path: Path) -> None:
    db = tmp_path / "var" / "calls.db"
    writer = RecordWriter(db)
    writer.start()
    records = call_records("c1")
    assert all(writer.submit(r) for r in records)
    writer.close()
    n = len(records)
    assert (writer.accepted, writer.written, writer.dropped, writer.failed) == (n, n, 0, 0)

    with RecordReader(db) as reader:
        [summary] = reader.list_calls(10)
        assert (summary.call_id, summary.agent, summary.turns, summary.e2e_p50_ms) == (
            "c1",
            "sales",
            3,
            700.0,
        )
        call = reader.get_call("c1")
        assert reader.get_call("nope") is None
    assert call is not None
    assert [(line.role, line.text) for line in call.transcript][:2] == [
        ("caller", "question 0"),
        ("agent", "answer 0"),
    ]
    assert call.variables == {"seats": 4, "zip": "02110"}
    assert [n.node for n in call.node_path] == ["greet", "qualify"]
    assert call.turns == [r for r in call_records("c1") if isinstance(r, TurnSummary)]
    assert (call.outcome, call.counters, call.from_number) == ("completed", {"barge_ins": 1.0}, "+15550001")


async def test_concurrent_submits_from_the_loop_never_wait_and_all_land(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    writer = RecordWriter(db, max_queue=100_000, batch_max=64)
    writer.start()
    loop_thread = threading.get_ident()

    async def one_call(n: int) -> None:
        for r in call_records(f"call-{n:03d}", turns=20):
            assert threading.get_ident() == loop_thread
            assert writer.submit(r)
            await asyncio.sleep(0)  # interleave with the other calls while the thread writes

    async with asyncio.TaskGroup() as tg:
        for n in range(50):
            tg.create_task(one_call(n))
    await writer.aclose()
    expected = 50 * len(call_records("x", turns=20))
    assert writer.accepted == writer.written == expected

    with RecordReader(db) as reader:
        calls = reader.list_calls(100)
        assert len(calls) == 50 and {c.turns for c in calls} == {20}
        detail = reader.get_call("call-007")
    assert detail is not None and len(detail.transcript) == 40


def test_full_queue_drops_with_one_warning_per_burst_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "calls.db"
    writer = RecordWriter(db, max_queue=5)  # not started: nothing drains the queue yet
    records = call_records("c1", turns=3)
    with caplog.at_level(logging.WARNING, logger="mediasrv.records"):
        results = [writer.submit(r) for r in records]
    assert results == [True] * 5 + [False] * (len(records) - 5)
    assert (writer.accepted, writer.dropped) == (5, len(records) - 5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "queue full" in warnings[0].getMessage()

    writer.start()
    writer.close()  # drains everything accepted
    assert writer.written == 5
    with RecordReader(db) as reader:
        call = reader.get_call("c1")
    assert call is not None
    assert [n.node for n in call.node_path] == ["greet"]
    assert [line.text for line in call.transcript] == ["question 0", "answer 0"]
    assert writer.submit(records[0]) is False  # closed: refused, counted
    assert writer.dropped == len(records) - 4


def test_burst_end_is_reported_when_records_flow_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = RecordWriter(tmp_path / "calls.db", max_queue=1)
    line = TranscriptLine(call_id="c", t=0.0, role="caller", text="hi")
    with caplog.at_level(logging.WARNING, logger="mediasrv.records"):
        assert writer.submit(line) and not writer.submit(line) and not writer.submit(line)
        writer.start()
        while writer.pending():
            threading.Event().wait(0.01)
        assert writer.submit(line)
    writer.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "2 records dropped in that burst" in messages[1]
    assert writer.written == 2


def test_close_without_start_still_writes_what_was_accepted(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    writer = RecordWriter(db)
    assert writer.submit(CallStart(call_id="c9", started_at=T0, agent="a"))
    writer.close()
    with RecordReader(db) as reader:
        assert [c.call_id for c in reader.list_calls(5)] == ["c9"]


def test_process_dying_on_an_exception_still_flushes_accepted_records(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    script = textwrap.dedent(
        f"""
        from mediasrv.records import RecordWriter, TranscriptLine
        w = RecordWriter({str(db)!r})
        w.start()
        for i in range(3000):
            assert w.submit(TranscriptLine(call_id="crash", t=float(i), role="caller", text=str(i)))
        raise RuntimeError("the call handler blew up")  # no close(): the atexit hook must drain
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "the call handler blew up" in proc.stderr
    with RecordReader(db) as reader:
        call = reader.get_call("crash")
    assert call is not None and [line.text for line in call.transcript] == [str(i) for i in range(3000)]


def test_submit_rejects_non_records(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not a call record"):
        RecordWriter(tmp_path / "x.db").submit({"call_id": "c"})  # type: ignore[arg-type]


def test_reader_on_a_missing_database_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no database"):
        RecordReader(tmp_path / "none.db")


def test_calls_tool_lists_and_shows_a_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "calls.db"
    writer = RecordWriter(db)
    writer.start()
    for r in call_records("c1"):
        writer.submit(r)
    writer.close()

    out = io.StringIO()
    assert calls_main(["--db", str(db), "list"], stdout=out) == 0
    listing = out.getvalue().splitlines()
    assert "e2e p50 ms" in listing[0]
    assert listing[1].split() == ["c1", "2025-06-15", "15:06:40Z", "sales", "completed", "3", "700"]

    out = io.StringIO()
    assert calls_main(["--db", str(db), "show", "c1"], stdout=out) == 0
    shown = out.getvalue()
    assert "caller  question 1" in shown and "agent   answer 2" in shown
    assert "zip = '02110'" in shown and "node path: greet -> qualify" in shown
    turn_rows = [line.split() for line in shown.splitlines() if line.strip().startswith(("1 ", "2 ", "3 "))]
    assert turn_rows[2][:3] == ["3", "202", "-"] and "800" in turn_rows[2]

    out = io.StringIO()
    assert calls_main(["--db", str(db), "show", "c1", "--json"], stdout=out) == 0
    assert '"call_id":"c1"' in out.getvalue() and '"first_frame_ms":800.0' in out.getvalue()

    assert calls_main(["--db", str(db), "show", "missing"]) == 1
    assert calls_main(["--db", str(tmp_path / "no.db"), "list"]) == 1
    assert "no database" in capsys.readouterr().err
