"""The PNG plots of ``mediasrv report``: stage bars per turn, end-to-end CDF, stage spread.

Theory of operation:

* Each plot function takes the turns :func:`mediasrv.report.load_turns` read and writes one PNG.
  :func:`write_plots` draws all three into a directory; :func:`mediasrv.report.run_report` calls it.
* Figures are bare :class:`matplotlib.figure.Figure` objects with the Agg canvas: no pyplot
  state, no display, safe to draw from any thread.
* Stages that did not happen (None) are left out, as in the table; the end-to-end target
  (:data:`mediasrv.report.E2E_TARGET_MS`) is drawn on every plot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from mediasrv.report import (
    ALL_PROFILES,
    E2E_TARGET_MS,
    REPORT_STAGES,
    TurnRow,
    profile_groups,
    stage_values,
)
from mediasrv.timing import TurnSummary

__all__ = ["PLOTS", "plot_e2e_cdf", "plot_stages_box", "plot_stages_per_turn", "write_plots"]

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
_SEGMENT_COLOURS: Final = ("#E69F00", "#56B4E9", "#009E73", "#BBBBBB")
_PROFILE_COLOURS: Final = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_TARGET_COLOUR: Final = "#C0392B"
BOX_FLOOR_MS: Final = 1
"""The stage-spread plot is on a log axis: shorter values (the pacer's send, ~0 ms) sit here."""
_LOG_TICKS_MS: Final = (10, 20, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000, 20000, 50000)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _ordered_for_bars(rows: Sequence[TurnRow]) -> list[tuple[str, int, TurnRow]]:
    """(profile, call number, row) grouped by profile, then call (first seen), then turn index."""
    call_no: dict[str, int] = {}
    keyed = []
    for i, r in enumerate(rows):
        n = call_no.setdefault(r.summary.call_id, len(call_no) + 1)
        keyed.append((r.profile or ALL_PROFILES, n, r, i))
    profile_order = {p: k for k, p in enumerate(dict.fromkeys(k[0] for k in keyed))}
    keyed.sort(key=lambda k: (profile_order[k[0]], k[1], k[2].summary.turn, k[3]))
    return [(p, n, r) for p, n, r, _ in keyed]


def _segments(s: TurnSummary) -> list[float]:
    """eot, LLM TTFT, TTS TTFB and the rest, laid end to end and clipped to the end-to-end time."""
    e2e = s.first_frame_ms
    assert e2e is not None
    out, used = [], 0.0
    for v in (s.eot_ms, s.llm_ttft_ms, s.tts_ttfb_ms):
        part = min(max(v or 0.0, 0.0), max(e2e - used, 0.0))
        out.append(part)
        used += part
    out.append(max(e2e - used, 0.0))
    return out


def plot_stages_per_turn(rows: Sequence[TurnRow], path: Path) -> None:
    ordered = [t for t in _ordered_for_bars(rows) if t[2].summary.first_frame_ms is not None]
    omitted = len(rows) - len(ordered)
    panels: dict[str, list[tuple[int, TurnRow]]] = {}
    for profile, call, row in ordered:
        panels.setdefault(profile, []).append((call, row))
    n = len(ordered)
    fig = _new_figure(max(8.0, min(26.0, 2.5 + 0.3 * n + 1.2 * len(panels))), 5.8)
    labels = (
        "dead air: end of speech → end-of-turn decision",
        "LLM time to first token",
        "TTS time to first audio",
        "rest, to the first frame sent",
    )
    title = "Where the time goes, turn by turn (bar height = end-to-end latency)"
    if omitted:
        title += f"; {omitted} turn(s) without a first frame left out"
    fig.suptitle(title, fontsize=13)
    if not panels:
        ax = fig.add_subplot()
        ax.text(
            0.5,
            0.5,
            "no turn has an end-to-end figure",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=13,
        )
        ax.set_axis_off()
        fig.savefig(path)
        return
    tops = [max(float(r.summary.first_frame_ms or 0.0) for _, r in p) for p in panels.values()]
    # One scale for every panel unless one profile dwarfs another (then each gets its own).
    share = max(tops) <= 3.0 * max(min(tops), E2E_TARGET_MS)
    axes = fig.subplots(
        1, len(panels), sharey=share, squeeze=False, width_ratios=[max(len(p), 4) for p in panels.values()]
    )[0]
    for ax, (profile, turns), top in zip(axes, panels.items(), tops, strict=True):
        seg = np.array([_segments(r.summary) for _, r in turns])
        x = np.arange(len(turns))
        bottom = np.zeros(len(turns))
        for k in range(4):
            ax.bar(
                x,
                seg[:, k],
                bottom=bottom,
                width=0.8,
                color=_SEGMENT_COLOURS[k],
                label=labels[k],
                edgecolor="white",
                linewidth=0.4 if len(turns) <= 60 else 0.0,
            )
            bottom += seg[:, k]
        step = max(1, math.ceil(len(turns) / 30))
        ax.set_xticks(
            x[::step],
            [f"{c}.{r.summary.turn}" for c, r in turns][::step],
            rotation=90 if len(turns) > 12 else 0,
            fontsize=9,
        )
        ax.set_xlim(-0.6, len(turns) - 0.4)
        ax.axhline(
            E2E_TARGET_MS,
            color=_TARGET_COLOUR,
            linestyle="--",
            linewidth=1.4,
            label=f"{E2E_TARGET_MS:.0f} ms end-to-end target",
        )
        p50 = float(np.percentile(seg.sum(axis=1), 50))
        name = "all turns" if profile == ALL_PROFILES else profile
        ax.set_title(f"{name}: {len(turns)} turns, e2e p50 {p50:.0f} ms", fontsize=11)
        if not share or ax is axes[0]:
            ax.set_ylim(0, max(max(tops) if share else top, E2E_TARGET_MS) * 1.08)
        ax.set_xlabel("call.turn", fontsize=10)
        ax.grid(axis="y", color="#DDDDDD", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("ms after the caller stopped speaking", fontsize=11)
    handles, hl = axes[0].get_legend_handles_labels()
    fig.legend(handles, hl, loc="outside lower center", ncol=3, fontsize=10, frameon=False)
    note = (
        "Stages are laid end to end and clipped to the end-to-end time, so work that overlaps "
        "(a speculative LLM start) is not counted twice."
    )
    if not share:
        note += " Panels have their own y scales."
    fig.text(0.005, 0.005, note, fontsize=8, color="#555555")
    fig.savefig(path)


def plot_e2e_cdf(rows: Sequence[TurnRow], path: Path) -> None:
    groups = profile_groups(rows)
    if len(groups) > 1:
        groups.pop(ALL_PROFILES)
    series = {p: np.sort(np.asarray(stage_values(g, "first_frame_ms"))) for p, g in groups.items()}
    series = {p: v for p, v in series.items() if v.size}
    fig = _new_figure(9.0, 5.6)
    ax = fig.add_subplot()
    if not series:
        ax.text(
            0.5,
            0.5,
            "no end-to-end figures in the source",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=13,
        )
    lo = min((float(v[0]) for v in series.values()), default=E2E_TARGET_MS)
    hi = max((float(v[-1]) for v in series.values()), default=E2E_TARGET_MS)
    log_x = lo > 0 and max(hi, E2E_TARGET_MS) / min(lo, E2E_TARGET_MS) > 12
    for k, (profile, v) in enumerate(series.items()):
        colour = _PROFILE_COLOURS[k % len(_PROFILE_COLOURS)]
        y = np.arange(1, v.size + 1) / v.size
        p50, p95 = float(np.percentile(v, 50)), float(np.percentile(v, 95))
        name = "all turns" if profile == ALL_PROFILES else profile
        ax.step(
            np.concatenate(([v[0]], v)),
            np.concatenate(([0.0], y)),
            where="post",
            color=colour,
            linewidth=2.0,
            label=f"{name} (n={v.size}): p50 {p50:.0f} ms, p95 {p95:.0f} ms",
        )
        ax.plot([p50, p95], [0.50, 0.95], "o", color=colour, markersize=8, markeredgecolor="white")
    for q, text in ((0.50, "p50"), (0.95, "p95")):
        ax.axhline(q, color="#999999", linestyle=":", linewidth=1.0)
        ax.text(1.005, q, text, transform=ax.get_yaxis_transform(), va="center", fontsize=10, color="#555555")
    ax.axvline(E2E_TARGET_MS, color=_TARGET_COLOUR, linestyle="--", linewidth=1.4)
    ax.text(
        E2E_TARGET_MS,
        1.0,
        f"{E2E_TARGET_MS:.0f} ms target",
        color=_TARGET_COLOUR,
        fontsize=10,
        ha="center",
        va="bottom",
        transform=ax.get_xaxis_transform(),
    )
    if log_x:
        ax.set_xscale("log")
        ticks = [t for t in _LOG_TICKS_MS if lo / 1.5 <= t <= hi * 1.5]
        ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, max(hi, E2E_TARGET_MS) * 1.08)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(lambda y, _pos: f"{100 * y:.0f}%")
    ax.set_xlabel(
        "end of caller speech → first agent frame (ms)" + (", log scale" if log_x else ""), fontsize=11
    )
    ax.set_ylabel("share of turns at or below", fontsize=11)
    ax.set_title("End-to-end latency, cumulative distribution", fontsize=13, pad=20)
    ax.grid(color="#E5E5E5", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    if series:
        handles, hl = ax.get_legend_handles_labels()
        fig.legend(handles, hl, loc="outside lower center", ncol=1, fontsize=10, frameon=False)
    fig.savefig(path)


def plot_stages_box(rows: Sequence[TurnRow], path: Path) -> None:
    groups = profile_groups(rows)
    if len(groups) > 1:
        groups.pop(ALL_PROFILES)
    stages = [(s, a, m) for s, a, m in REPORT_STAGES if stage_values(rows, a)]
    n_prof = len(groups)
    fig = _new_figure(10.0, max(3.5, 1.0 + 0.55 * len(stages) * max(1, n_prof) ** 0.6 + 0.3 * len(stages)))
    ax = fig.add_subplot()
    if not stages:
        ax.text(
            0.5,
            0.5,
            "no stage figures in the source",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=13,
        )
        fig.savefig(path)
        return
    height = 0.8 / n_prof
    for j, group in enumerate(groups.values()):
        colour = _PROFILE_COLOURS[j % len(_PROFILE_COLOURS)]
        data, pos = [], []
        for i, (_, attr, _) in enumerate(stages):
            xs = stage_values(group, attr)
            if xs:
                data.append([max(BOX_FLOOR_MS, x) for x in xs])  # a log axis has no zero
                pos.append(len(stages) - 1 - i + ((n_prof - 1) / 2 - j) * height)
        ax.boxplot(
            data,
            positions=pos,
            orientation="horizontal",
            widths=height * 0.8,
            whis=(5, 95),
            patch_artist=True,
            manage_ticks=False,
            boxprops={"facecolor": colour, "alpha": 0.55, "edgecolor": colour},
            medianprops={"color": "black", "linewidth": 1.6},
            whiskerprops={"color": colour},
            capprops={"color": colour},
            flierprops={"marker": ".", "markersize": 4, "markerfacecolor": colour, "markeredgecolor": colour},
        )
    ax.set_yticks(
        range(len(stages)),
        [f"{s}  (n={len(stage_values(rows, a))})" for s, a, _ in reversed(stages)],
        fontsize=10,
    )
    ax.set_xscale("log")
    lo = max(BOX_FLOOR_MS, min(min(stage_values(rows, a)) for _, a, _ in stages))
    hi = max(max(stage_values(rows, a)) for _, a, _ in stages)
    ticks = [t for t in (BOX_FLOOR_MS, 2, 5, *_LOG_TICKS_MS) if lo / 1.5 <= t <= hi * 1.5]
    ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
    ax.set_xlim(lo / 1.5, hi * 1.5)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(E2E_TARGET_MS, color=_TARGET_COLOUR, linestyle="--", linewidth=1.2)
    ax.set_xlabel(
        "milliseconds (log scale, values under 1 ms drawn at 1 ms); "
        "box = p25..p75, line = median, whiskers = p5..p95",
        fontsize=10,
    )
    ax.set_title("Spread of each stage", fontsize=13)
    ax.grid(axis="x", color="#E5E5E5", linewidth=0.8, which="both")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    handles: list[Any] = [Line2D([], [], color=_TARGET_COLOUR, linestyle="--")]
    hl = [f"{E2E_TARGET_MS:.0f} ms end-to-end target"]
    if n_prof > 1 or next(iter(groups)) != ALL_PROFILES:
        for j, profile in enumerate(groups):
            handles.append(Patch(facecolor=_PROFILE_COLOURS[j % len(_PROFILE_COLOURS)], alpha=0.55))
            hl.append(profile)
    fig.legend(handles, hl, loc="outside lower center", ncol=len(hl), fontsize=10, frameon=False)
    fig.savefig(path)


PLOTS: Final[tuple[tuple[str, Callable[[Sequence[TurnRow], Path], None]], ...]] = (
    ("stages_per_turn.png", plot_stages_per_turn),
    ("e2e_cdf.png", plot_e2e_cdf),
    ("stages_box.png", plot_stages_box),
)
"""``(file name, draw function)`` of every plot, in the order the report shows them."""


def write_plots(rows: Sequence[TurnRow], out_dir: Path) -> dict[str, Path]:
    """Draw every plot of :data:`PLOTS` into ``out_dir`` (which must exist).

    Returns:
        File name -> path written, in :data:`PLOTS` order.
    """
    files: dict[str, Path] = {}
    for name, draw in PLOTS:
        draw(rows, out_dir / name)
        files[name] = out_dir / name
    return files
