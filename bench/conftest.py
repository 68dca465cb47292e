"""Collect ``bench_*.py`` modules when a directory (e.g. ``pytest bench``) is given.

pytest's default ``python_files`` only matches ``test_*.py``. A bench file named on the
command line is collected anyway, and so is any file matching ``-o python_files=...``; this
hook adds the remaining ``bench_*.py`` files and leaves those cases to pytest's own collector.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    patterns: list[str] = parent.config.getini("python_files")
    if parent.session.isinitpath(file_path) or any(fnmatch(file_path.name, p) for p in patterns):
        return None
    return pytest.Module.from_parent(parent, path=file_path)
