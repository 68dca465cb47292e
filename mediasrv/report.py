"""``mediasrv report SOURCE --out DIR``: per-stage latency tables and plots from recorded turns.

Theory of operation:

* A *source* is one of

  - an SQLite call-record database (recognised by its file header). Turns are read from a
    ``turns`` table holding one :class:`~mediasrv.timing.TurnSummary` as JSON per row. The JSON
    column is the first of ``summary``, ``summary_json``, ``timeline``, ``data`` or ``json`` that
    the table has. A turn's profile is taken from a ``profile`` key in that JSON, else a
    ``profile`` column of ``turns``, else a ``profile`` column of a ``calls`` table joined on
    ``call_id`` (or ``id``). This reads the database :class:`mediasrv.records.RecordWriter` writes
    (whose ``calls`` table has no profile: its turns form one group);
  - a JSON-lines file (or a directory of ``*.jsonl``/``*.json``/``*.log`` files). Each line may
    be a bare ``TurnSummary``, the line of :func:`mediasrv.metrics.turn_log_line`, a log record
    with the JSON after a text prefix, an object nesting the summary under ``summary``, or a demo
    turn (``call``, ``turn``, ``e2e_ms`` and a ``stages`` mapping). Lines that are not turns (the
    demo's table, its final ``--json`` summary) are skipped; a profile named on such a summary
    line becomes the default profile of that file's turns.

* A stage that did not happen (None) is left out of that stage's figures; it never counts as
  zero. Percentiles are numpy's linear interpolation, the same as
  :func:`mediasrv.timing.percentile`.

* The outputs go to ``DIR``: ``report.md`` and ``report.csv`` (the table), and the PNG plots
  that :mod:`mediasrv.report_plots` draws (``stages_per_turn.png``, ``e2e_cdf.png``,
  ``stages_box.png``).
"""

from __future__ import annotations

import argparse
import csv
import math
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np

from mediasrv.timing import TurnSummary

__all__ = [
    "ALL_PROFILES",
    "E2E_TARGET_MS",
    "REPORT_STAGES",
    "ReportResult",
    "StageStats",
    "TurnRow",
    "load_turns",
    "main",
    "profile_groups",
    "run_report",
    "stage_table",
    "stage_values",
]

E2E_TARGET_MS: Final = 600.0
"""The end-to-end target drawn on the plots (ms)."""

REPORT_STAGES: Final[tuple[tuple[str, str, str], ...]] = (
    ("eot", "eot_ms", "end of speech → end-of-turn decision"),
    ("stt_final", "stt_final_ms", "end of speech → final transcript"),
    ("llm_ttft", "llm_ttft_ms", "LLM request → first token"),
    ("llm_total", "llm_total_ms", "LLM request → stream end"),
    ("tts_ttfb", "tts_ttfb_ms", "first text to TTS → first audio"),
    ("tts_total", "tts_total_ms", "first text to TTS → last audio"),
    ("playback", "playback_ms", "audio in hand and turn ended → first frame sent"),
    ("extraction", "extraction_ms", "LLM request → side extraction done"),
    ("e2e", "first_frame_ms", "end of speech → first agent frame (end-to-end)"),
)
"""``(stage, TurnSummary field, meaning)`` in pipeline order; ``e2e`` is the headline."""

ALL_PROFILES: Final = "all"
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_SUMMARY_COLUMNS: Final = ("summary", "summary_json", "timeline", "data", "json")
_SUMMARY_FIELDS: Final = frozenset(f.name for f in msgspec.structs.fields(TurnSummary))
_JSONL_SUFFIXES: Final = (".jsonl", ".json", ".log", ".ndjson", ".txt")


class TurnRow(msgspec.Struct, frozen=True):
    """One turn read from a source, with the profile it ran under (None if the source says none)."""

    summary: TurnSummary
    profile: str | None = None


@dataclass(frozen=True)
class StageStats:
    """Figures of one stage within one profile (ms; None when the stage has no samples)."""

    profile: str
    stage: str
    n: int
    p50: float | None
    p95: float | None
    mean: float | None
    min: float | None
    max: float | None


@dataclass
class ReportResult:
    """What :func:`run_report` read and wrote."""

    source: str
    out_dir: Path
    turns: int
    calls: int
    profiles: list[str]
    skipped_lines: int
    stats: list[StageStats]
    table: str
    """The per-stage table as Markdown (what ``main`` prints)."""
    files: dict[str, Path] = field(default_factory=dict)
    """Output name (``report.md``, ``e2e_cdf.png``...) -> path written."""

    def stat(self, stage: str, profile: str = ALL_PROFILES) -> StageStats | None:
        """The row of ``stage`` for ``profile`` (``all`` = every turn), if there is one."""
        for s in self.stats:
            if s.stage == stage and s.profile == profile:
                return s
        return None


# --------------------------------------------------------------------------- reading sources


def load_turns(source: str) -> tuple[list[TurnRow], int]:
    """Read every turn of ``source`` (an SQLite call-record DB, a JSON-lines file or a directory).

    The greeting (turn 0) is left out: it answers no caller speech, so it has no end-to-end
    figure in the sense of this report (its own start-to-first-frame delay is in the logs).

    Returns:
        The turns in source order and the number of non-empty lines that were not turns.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: an SQLite source has no usable ``turns`` table.
    """
    rows, skipped = _load_turns(source)
    return [r for r in rows if r.summary.turn != 0], skipped


def _load_turns(source: str) -> tuple[list[TurnRow], int]:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(source)
    if path.is_dir():
        rows: list[TurnRow] = []
        skipped = 0
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            if _is_sqlite(child):
                rows.extend(_load_sqlite(child))
            elif child.suffix in _JSONL_SUFFIXES:
                got, bad = _load_jsonl(child)
                rows.extend(got)
                skipped += bad
        return rows, skipped
    if _is_sqlite(path):
        return _load_sqlite(path), 0
    return _load_jsonl(path)


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC


def _load_sqlite(path: Path) -> list[TurnRow]:
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(turns)")]
        if not cols:
            raise ValueError(f"{path}: no 'turns' table")
        summary_col = next((c for c in _SUMMARY_COLUMNS if c in cols), None)
        if summary_col is None:
            raise ValueError(f"{path}: the 'turns' table has none of the columns {_SUMMARY_COLUMNS}")
        call_profiles: dict[str, str] = {}
        call_cols = [r[1] for r in con.execute("PRAGMA table_info(calls)")]
        key = "call_id" if "call_id" in call_cols else "id"  # mediasrv.records names it ``id``
        if key in call_cols and "profile" in call_cols:
            for call_id, prof in con.execute(f"SELECT {key}, profile FROM calls"):
                if prof is not None:
                    call_profiles[str(call_id)] = str(prof)
        profile_expr = "profile" if "profile" in cols else "NULL"
        order = "call_id, idx" if {"call_id", "idx"} <= set(cols) else "rowid"
        query = f"SELECT {summary_col}, {profile_expr} FROM turns ORDER BY {order}"  # names from a fixed list
        rows: list[TurnRow] = []
        for raw, col_profile in con.execute(query):
            if raw is None:
                continue
            obj = msgspec.json.decode(raw.encode() if isinstance(raw, str) else raw)
            if not isinstance(obj, dict):
                continue
            row = _row_from_object(obj, None)
            if row is None:
                continue
            profile = row.profile or col_profile or call_profiles.get(row.summary.call_id)
            rows.append(TurnRow(row.summary, None if profile is None else str(profile)))
        return rows
    finally:
        con.close()


def _load_jsonl(path: Path) -> tuple[list[TurnRow], int]:
    found: list[tuple[TurnRow, bool]] = []  # (row, profile given explicitly)
    default_profile: str | None = None
    skipped = 0
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            obj = _json_in_line(line)
            if obj is None:
                skipped += bool(line.strip())
                continue
            row = _row_from_object(obj, None)
            if row is None:
                # e.g. the demo's final --json line: not a turn, but it names the profile.
                prof = obj.get("profile")
                if isinstance(prof, str) and default_profile is None:
                    default_profile = prof
                skipped += 1
                continue
            found.append((row, row.profile is not None))
    rows = [r if explicit else TurnRow(r.summary, default_profile) for r, explicit in found]
    return rows, skipped


def _json_in_line(line: str) -> dict[str, Any] | None:
    """The JSON object of a line, which may follow a log prefix; None if there is none."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        obj = msgspec.json.decode(line[start:].strip())
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _row_from_object(obj: dict[str, Any], profile: str | None) -> TurnRow | None:
    """Normalise the accepted shapes of a turn record to a :class:`TurnRow` (None: not a turn)."""
    outer_profile = obj.get("profile")
    for key in ("summary", "timeline"):
        inner = obj.get(key)
        if isinstance(inner, dict):
            obj = {**inner, "profile": inner.get("profile", outer_profile)}
            break
    flat: dict[str, Any] = dict(obj)
    if "call_id" not in flat and "call" in flat:
        flat["call_id"] = flat["call"]
    stages = flat.get("stages")
    if not isinstance(stages, dict):
        stages = flat.get("stages_ms")
    if isinstance(stages, dict):
        for name, value in stages.items():
            if isinstance(value, dict):
                return None  # aggregated (p50/p95) figures: a summary line, not a turn
            key = name if name.endswith("_ms") else f"{name}_ms"
            key = "first_frame_ms" if key == "e2e_ms" else key
            flat.setdefault(key, value)
    e2e = flat.get("e2e_ms")
    if isinstance(e2e, dict):
        return None
    if "first_frame_ms" not in flat and isinstance(e2e, int | float):
        flat["first_frame_ms"] = e2e
    if "call_id" not in flat or "turn" not in flat:
        return None
    flat["call_id"] = str(flat["call_id"])
    try:
        summary = msgspec.convert({k: v for k, v in flat.items() if k in _SUMMARY_FIELDS}, TurnSummary)
    except msgspec.ValidationError:
        return None
    prof = flat.get("profile", profile)
    return TurnRow(summary, prof if isinstance(prof, str) else profile)


# --------------------------------------------------------------------------- the table


def stage_values(rows: Iterable[TurnRow], attr: str) -> list[float]:
    """The finite values of ``TurnSummary.<attr>`` over ``rows``; turns without the stage are left out."""
    out = []
    for r in rows:
        v = getattr(r.summary, attr)
        if v is not None and math.isfinite(v):
            out.append(float(v))
    return out


def profile_groups(rows: Sequence[TurnRow]) -> dict[str, list[TurnRow]]:
    """Profile name -> its turns, in first-seen order; ``all`` first when there are several."""
    groups: dict[str, list[TurnRow]] = {}
    for r in rows:
        groups.setdefault(r.profile or ALL_PROFILES, []).append(r)
    if len(groups) > 1:
        groups = {ALL_PROFILES: list(rows), **{k: v for k, v in groups.items() if k != ALL_PROFILES}}
    return groups


def stage_table(rows: Sequence[TurnRow]) -> list[StageStats]:
    """p50/p95/mean/min/max and sample count of every stage, per profile and over all turns."""
    out: list[StageStats] = []
    for profile, group in profile_groups(rows).items():
        for stage, attr, _ in REPORT_STAGES:
            xs = stage_values(group, attr)
            if xs:
                a = np.asarray(xs)
                out.append(
                    StageStats(
                        profile,
                        stage,
                        len(xs),
                        float(np.percentile(a, 50)),
                        float(np.percentile(a, 95)),
                        float(a.mean()),
                        float(a.min()),
                        float(a.max()),
                    )
                )
            else:
                out.append(StageStats(profile, stage, 0, None, None, None, None, None))
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _markdown_table(stats: Sequence[StageStats]) -> str:
    meaning = {s: m for s, _, m in REPORT_STAGES}
    lines = [
        "| profile | stage | meaning | n | p50 ms | p95 ms | mean ms | min ms | max ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        stage = f"**{s.stage}**" if s.stage == "e2e" else s.stage
        lines.append(
            f"| {s.profile} | {stage} | {meaning[s.stage]} | {s.n} | {_fmt(s.p50)} | {_fmt(s.p95)} "
            f"| {_fmt(s.mean)} | {_fmt(s.min)} | {_fmt(s.max)} |"
        )
    return "\n".join(lines)


def _outcomes_md(rows: Sequence[TurnRow]) -> str:
    lines = [
        "| profile | turns | e2e within 600 ms | speculative hit | miss "
        "| LLM reply requests / turn (mean, max) | side calls | barge-ins |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for profile, group in profile_groups(rows).items():
        e2e = stage_values(group, "first_frame_ms")
        within = f"{sum(v <= E2E_TARGET_MS for v in e2e)}/{len(e2e)}" if e2e else "-"
        spec = [r.summary.speculative for r in group]
        barge = sum(r.summary.barge_in for r in group)
        requests = [r.summary.llm_requests for r in group]
        churn = f"{sum(requests) / len(requests):.2f}, {max(requests)}"
        sides = sum(r.summary.side_requests for r in group)
        lines.append(
            f"| {profile} | {len(group)} | {within} | {spec.count('hit')} | {spec.count('miss')} "
            f"| {churn} | {sides} | {barge} |"
        )
    return "\n".join(lines)


def _write_csv(path: Path, stats: Sequence[StageStats]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["profile", "stage", "n", "p50_ms", "p95_ms", "mean_ms", "min_ms", "max_ms"])
        for s in stats:
            w.writerow(
                [
                    s.profile,
                    s.stage,
                    s.n,
                    *("" if v is None else f"{v:.3f}" for v in (s.p50, s.p95, s.mean, s.min, s.max)),
                ]
            )


# --------------------------------------------------------------------------- entry points


def run_report(source: str, out_dir: str) -> ReportResult:
    """Read ``source``, write the table and the plots into ``out_dir`` (created if need be).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: an SQLite source has no usable ``turns`` table.
    """
    rows, skipped = load_turns(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = stage_table(rows)
    table = _markdown_table(stats)
    profiles = [p for p in profile_groups(rows) if p != ALL_PROFILES] if rows else []
    calls = len({r.summary.call_id for r in rows})
    result = ReportResult(
        source=source,
        out_dir=out,
        turns=len(rows),
        calls=calls,
        profiles=profiles,
        skipped_lines=skipped,
        stats=stats,
        table=table,
    )
    # Imported here, not at the top: report_plots builds on this module's rows and groups.
    from mediasrv.report_plots import write_plots

    result.files.update(write_plots(rows, out))
    _write_csv(out / "report.csv", stats)
    result.files["report.csv"] = out / "report.csv"
    md = [
        "# mediasrv latency report",
        "",
        f"Source: `{source}`: {len(rows)} turns from {calls} calls"
        + (f", profiles: {', '.join(profiles)}" if profiles else "")
        + (f" ({skipped} non-turn lines skipped)" if skipped else "")
        + ".",
        "",
        "Figures in milliseconds. A stage that did not happen in a turn is left out of that stage's "
        "figures (n counts the turns that have it). Percentiles interpolate linearly.",
        "",
        table,
        "",
        _outcomes_md(rows) if rows else "",
        "",
        "![Stages per turn](stages_per_turn.png)",
        "",
        "![End-to-end CDF](e2e_cdf.png)",
        "",
        "![Spread of each stage](stages_box.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    result.files["report.md"] = out / "report.md"
    return result


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``report`` arguments to ``parser`` (a new one if None) and return it."""
    p = (
        parser
        if parser is not None
        else argparse.ArgumentParser(
            prog="mediasrv report",
            description="per-stage latency table and plots from call records or JSON logs",
        )
    )
    p.add_argument("source", help="an SQLite call-record DB, a JSON-lines log, or a directory of them")
    p.add_argument("--out", required=True, help="directory for report.md, report.csv and the PNG plots")
    return p


def main(args: Sequence[str] | None = None) -> int:
    """``mediasrv report SOURCE --out DIR``; returns the exit status (1: nothing to report)."""
    opts = build_parser().parse_args(args)
    try:
        result = run_report(opts.source, opts.out)
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"mediasrv report: {exc}", file=sys.stderr)
        return 2
    print(result.table)
    print(
        f"\n{result.turns} turns, {result.calls} calls; wrote {', '.join(sorted(result.files))} "
        f"to {result.out_dir}"
    )
    return 0 if result.turns else 1
