"""Operator tools behind ``mediasrv`` sub-commands (re-exports only)."""

from __future__ import annotations

from mediasrv.tools.turns_tool import (
    Decision,
    TurnsReport,
    add_arguments,
    analyse_recording,
    main,
    run_turns_tool,
)

__all__ = [
    "Decision",
    "TurnsReport",
    "add_arguments",
    "analyse_recording",
    "main",
    "run_turns_tool",
]
