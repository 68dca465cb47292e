"""``mediasrv calls [--db PATH] [list|show ID] [--json]``: read the call records.

Rules: read-only (the database is opened with ``mode=ro``, so it is safe while the daemon
writes); plain text by default, one JSON document with ``--json``; exit status 0 on success,
1 when the database or the call is missing (the message goes to stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final, TextIO

import msgspec

from mediasrv.errors import ConfigError
from mediasrv.records import DEFAULT_RECORDS_PATH, CallDetail, CallSummary, RecordReader, format_time
from mediasrv.timing import TurnSummary

TURN_COLUMNS: Final = (
    ("turn", "turn"),
    ("eot", "eot_ms"),
    ("stt", "stt_final_ms"),
    ("ttft", "llm_ttft_ms"),
    ("llm", "llm_total_ms"),
    ("tts", "tts_ttfb_ms"),
    ("extract", "extraction_ms"),
    ("e2e", "first_frame_ms"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``mediasrv calls`` (the CLI may reuse it as a sub-parser's parents)."""
    p = argparse.ArgumentParser(prog="mediasrv calls", description="list and show recorded calls")
    p.add_argument(
        "--db", default=DEFAULT_RECORDS_PATH, help=f"records database (default {DEFAULT_RECORDS_PATH})"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--limit", type=int, default=50, help="list: at most this many calls")
    p.add_argument("action", nargs="?", default="list", choices=["list", "show"])
    p.add_argument("call_id", nargs="?", help="show: the call's id")
    return p


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def render_list(calls: Sequence[CallSummary]) -> str:
    """The ``list`` table.

    Args:
        calls: summaries, as :meth:`RecordReader.list_calls` returns them.

    Returns:
        Lines of text (a header, then one line per call).
    """
    if not calls:
        return "no calls recorded"
    width = max(8, *(len(c.call_id) for c in calls))
    lines = [f"{'call':<{width}}  {'started (UTC)':<20}  {'agent':<16}  {'outcome':<10}  turns  e2e p50 ms"]
    for c in calls:
        lines.append(
            f"{c.call_id:<{width}}  {format_time(c.started_at):<20}  {(c.agent or '-'):<16}"
            f"  {(c.outcome or '-'):<10}  {c.turns:>5}  {_ms(c.e2e_p50_ms):>10}"
        )
    return "\n".join(lines)


def _turn_row(t: TurnSummary) -> list[str]:
    cells = [str(t.turn)] + [_ms(getattr(t, field)) for _, field in TURN_COLUMNS[1:]]
    flags = [
        f for f, on in (("spec-" + (t.speculative or ""), t.speculative), ("barge-in", t.barge_in)) if on
    ]
    return [*cells, " ".join(flags)]


def render_call(call: CallDetail) -> str:
    """The ``show`` report: header, transcript, variables, node path, per-turn timings (ms).

    Args:
        call: as :meth:`RecordReader.get_call` returns it.

    Returns:
        Lines of text.
    """
    out = [
        f"call {call.call_id}  agent {call.agent or '-'}"
        f"  {call.from_number or '-'} -> {call.to_number or '-'}",
        f"started {format_time(call.started_at)}  ended {format_time(call.ended_at)}"
        f"  outcome {call.outcome or '-'}",
    ]
    if call.counters:
        out.append("counters: " + ", ".join(f"{k}={v:g}" for k, v in sorted(call.counters.items())))
    out.append("\ntranscript:")
    out.extend(f"  {line.t:7.1f}s  {line.role:<6}  {line.text}" for line in call.transcript)
    if not call.transcript:
        out.append("  (none)")
    out.append("\nvariables:")
    out.extend(f"  {name} = {value!r}" for name, value in call.variables.items())
    if not call.variables:
        out.append("  (none)")
    out.append("\nnode path: " + (" -> ".join(n.node for n in call.node_path) or "(none)"))
    out.append("\nturns (ms from the end of caller speech; ttft/llm from the LLM request):")
    header = [name for name, _ in TURN_COLUMNS] + ["notes"]
    rows = [_turn_row(t) for t in call.turns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    for cells in [header, *rows]:
        out.append(
            "  " + "  ".join(c.rjust(w) for c, w in zip(cells[:-1], widths, strict=False)) + "  " + cells[-1]
        )
    return "\n".join(out)


def main(args: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run ``mediasrv calls``.

    Args:
        args: the arguments after ``calls`` (None: ``sys.argv[1:]``).
        stdout: where the report goes (default ``sys.stdout``).

    Returns:
        The exit status: 0, 1 (missing database or call) or 2 (usage).
    """
    out = stdout if stdout is not None else sys.stdout
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.action == "show" and not ns.call_id:
        parser.print_usage(sys.stderr)
        print("mediasrv calls: show needs a call id", file=sys.stderr)
        return 2
    try:
        reader = RecordReader(ns.db)
    except ConfigError as exc:
        print(f"mediasrv calls: {exc}", file=sys.stderr)
        return 1
    with reader:
        if ns.action == "list":
            calls = reader.list_calls(ns.limit)
            text = msgspec.json.encode(calls).decode() if ns.json else render_list(calls)
        else:
            call = reader.get_call(ns.call_id)
            if call is None:
                print(f"mediasrv calls: no call {ns.call_id!r} in {ns.db}", file=sys.stderr)
                return 1
            text = msgspec.json.encode(call).decode() if ns.json else render_call(call)
    print(text, file=out)
    return 0
