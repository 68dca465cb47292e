"""Static checks as part of the suite: ruff lint, ruff format, mypy --strict on the package.

They run the tools the dev extra installs, from the repository root, so a clean clone's
``./dev test`` fails on a lint error or an unformatted file the same way CI does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_lint_is_clean() -> None:
    done = _run(_tool("ruff"), "check", "mediasrv", "bench", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_clean() -> None:
    done = _run(_tool("ruff"), "format", "--check", "mediasrv", "bench", "tests")
    assert done.returncode == 0, "run `ruff format mediasrv bench tests`:\n" + done.stdout + done.stderr


def test_mypy_strict_is_clean() -> None:
    done = _run(_tool("mypy"), "mediasrv")
    assert done.returncode == 0, done.stdout + done.stderr
