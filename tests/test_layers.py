"""Import rules of the package, read from the source with ``ast`` (an import-linter contract, no
new dependency).

Every module of ``mediasrv/`` is parsed; every import counts, at module level and inside
functions, with relative imports resolved. Imports under ``if TYPE_CHECKING:`` are ignored: they
never run, so they are annotations, not dependencies (the agent runner and its helpers name each
other that way). An import under ``if __name__ == "__main__":`` runs only when the module is a
script, so it counts like one inside a function (lazy).

Rules checked:

a. No import cycle between modules, counting module-level imports only: an import inside a
   function is the accepted way to break one (see ``ALLOWED_CYCLES``).
b. No product module imports :mod:`mediasrv.lab`. The one exception is the CLI's lab commands,
   which import it inside the function that runs them (``LAB_COMMANDS``).
c. Layers, top to bottom; a module imports from its own layer or lower ones only
   (``ALLOWED_LAYER_IMPORTS`` lists today's exceptions):

   ======== ============================================ =============================================
   layer    modules                                      why there
   ======== ============================================ =============================================
   cli      ``cli``, ``__main__``, ``tools/``            entry points: parse a command line, run one
                                                         command (``turns``, ``vad``, ``calls``)
   lab      ``lab/``                                     stand-ins for the outside world: emulators,
                                                         the demo, the scripted STT
   daemon   ``server``, ``agent_mode``                   the aiohttp daemon, and ``serve --mode
                                                         agent`` wiring the agent service into it
   daemon   ``replay``                                   the echo-mode behaviour (replays the
                                                         caller's words: a line check)
   daemon   ``report``, ``report_plots``                 latency reports over the records and the
                                                         turn log lines the daemon writes
   agent    ``agent/``                                   the voice agent: config, flow, planner, the
                                                         per-call runner and its provider adapters
   call     ``call``, ``vad_shell``, ``metrics``,        what a call behaviour runs on: one call's
            ``records``                                  asyncio shell, the batched VAD's loop
                                                         shell, the Prometheus registry and turn log
                                                         line, the SQLite writer thread
   core     ``turns/``, ``vad/``, ``jitter/``,           sans-I/O cores, and the providers' wire
            ``codec/``, ``providers/``                   messages, cores and thin clients
   core     ``errors``, ``timing``, ``profiles``,        shared leaves: exceptions, per-turn timing
            ``corpus``, ``mediasrv/__init__``            structs, latency profiles (plain data), the
                                                         corpus reader (codec only); none imports
                                                         anything above the cores
   ======== ============================================ =============================================

d. The cores import no asyncio, aiohttp, websockets or uvloop, directly or through another
   module of the package: ``codec/``, ``jitter/``, ``vad/`` (the VAD's asyncio shell is the
   top-level ``vad_shell``), ``turns/``, and the providers' sans-I/O modules (``stream``,
   ``messages`` and the others their docstrings call sans-I/O or pure).

Every allow-list must be current: an entry whose import (or cycle) is gone fails
:func:`test_allow_lists_have_no_stale_entries`, so the lists only shrink.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mediasrv"
LAB = "mediasrv.lab"
IO_LIBRARIES = frozenset({"asyncio", "aiohttp", "websockets", "uvloop"})

# Top to bottom; a module belongs to the first layer with a prefix equal to its name or to one of
# its parent packages. The package's own __init__ is matched by name only (see layer_of).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("mediasrv.cli", "mediasrv.__main__", "mediasrv.tools")),
    ("lab", ("mediasrv.lab",)),
    (
        "daemon",
        (
            "mediasrv.server",
            "mediasrv.agent_mode",
            "mediasrv.replay",
            "mediasrv.report",
            "mediasrv.report_plots",
        ),
    ),
    ("agent", ("mediasrv.agent",)),
    ("call", ("mediasrv.call", "mediasrv.vad_shell", "mediasrv.metrics", "mediasrv.records")),
    (
        "core",
        (
            "mediasrv.turns",
            "mediasrv.vad",
            "mediasrv.jitter",
            "mediasrv.codec",
            "mediasrv.providers",
            "mediasrv.errors",
            "mediasrv.timing",
            "mediasrv.profiles",
            "mediasrv.corpus",
        ),
    ),
)

CORE_PACKAGES = ("mediasrv.codec", "mediasrv.jitter", "mediasrv.vad", "mediasrv.turns")
SANS_IO_PROVIDER_MODULES = (
    # stream.py and messages.py of every provider are added by core_modules() (but see
    # PROVIDER_SHELLS); these are the other modules of providers/ whose docstrings say sans-I/O
    # (or pure).
    "mediasrv.providers.llm.assemble",
    "mediasrv.providers.llm.say",
    "mediasrv.providers.llm.sse",
    "mediasrv.providers.llm.translate",
    "mediasrv.providers.telnyx",  # re-exports messages and stream only
    "mediasrv.providers.telnyx.webhooks",
)
PROVIDER_SHELLS = (
    # Named stream.py, but its docstring says SHELL: the asyncio LLMStream every LLM client returns
    # (its pump task and queue). Its sans-I/O parts are sse, assemble and messages.
    "mediasrv.providers.llm.stream",
)

# (a) Module-level cycles allowed today, each a set of modules. Empty: the agent runner imports
# actions, reply and turn_replies (and failures), and those name the runner back only under
# `if TYPE_CHECKING:`, which is no cycle at import time. The rewrite of those four files under
# way elsewhere must keep it so (or add a commented entry here).
ALLOWED_CYCLES: tuple[frozenset[str], ...] = ()

# (b) The CLI's lab commands: (module, function) that may import mediasrv.lab inside its body.
LAB_COMMANDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("mediasrv.cli", "_demo"),  # mediasrv demo
        ("mediasrv.cli", "_emulate"),  # mediasrv emulate NAME
        ("mediasrv.cli", "_serve"),  # mediasrv serve --mode agent --emulate PROFILE
        ("mediasrv.cli", "_turns"),  # mediasrv turns --labels LABELS.json
    }
)

# (c) Imports against the layers today: (importer, imported) -> why it is tolerated. None: the
# agent runs on the call services (call, vad_shell, metrics, records), a layer below it.
ALLOWED_LAYER_IMPORTS: Mapping[tuple[str, str], str] = {}

# (d) Cores importing an I/O library today: (core module, library) -> why. None.
ALLOWED_CORE_IO: Mapping[tuple[str, str], str] = {}


# --------------------------------------------------------------------------- reading the source


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's dependency of one module on another.

    Attributes:
        importer: the importing module (dotted name).
        target: the imported module: a module of the package (the longest one the statement
            names) or, outside it, the name as written.
        line: line of the statement.
        scope: "" at module level, else the enclosing function's qualified name
            (``_demo``, ``Class.method``) or ``__main__`` for a ``__name__`` guard.
    """

    importer: str
    target: str
    line: int
    scope: str = ""

    @property
    def lazy(self) -> bool:
        """Runs only when its function (or the script) runs, not when the module is imported."""
        return self.scope != ""

    def __str__(self) -> str:
        where = f" (in {self.scope})" if self.scope else ""
        return f"{self.importer}:{self.line} imports {self.target}{where}"


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    out: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _known(name: str, known: Collection[str]) -> str:
    """``name`` cut back to the longest module of the package it starts with (or left as is)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return name


def module_imports(
    name: str, source: str, modules: Iterable[str], *, is_package: bool = False
) -> list[Import]:
    """The imports of one module, ``TYPE_CHECKING`` blocks left out.

    Args:
        name: the module's dotted name.
        source: its text.
        modules: every module of the package (to resolve ``from pkg import module``).
        is_package: the source is a package's ``__init__`` (relative imports start from it).
    """
    known = set(modules)
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: list[Import] = []

    def add(target: str, line: int, qual: str, lazy: bool) -> None:
        imp = Import(name, _known(target, known), line, qual if lazy else "")
        if imp not in found:  # `from m import a, b` is one dependency
            found.append(imp)

    def visit(node: ast.AST, qual: str, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_one(other, qual, lazy)
            elif isinstance(child, ast.If) and not qual and _is_main_guard(child.test):
                for inner in child.body:
                    visit_one(inner, "__main__", True)
                for other in child.orelse:
                    visit_one(other, qual, lazy)
            else:
                visit_one(child, qual, lazy)

    def visit_one(node: ast.AST, qual: str, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, qual, lazy)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                add(full if full in known else module, node.lineno, qual, lazy)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            own = "<lambda>" if isinstance(node, ast.Lambda) else node.name
            # A class body runs when the module is imported; a function body when it is called.
            visit(node, f"{qual}.{own}" if qual else own, lazy or not isinstance(node, ast.ClassDef))
        else:
            visit(node, qual, lazy)

    visit(ast.parse(source), "", False)
    return found


@functools.cache
def current_imports() -> tuple[Import, ...]:
    """Every import of every module of the package, as the source reads today."""
    modules = package_modules()
    out: list[Import] = []
    for name, path in modules.items():
        out += module_imports(name, path.read_text(), modules, is_package=path.name == "__init__.py")
    return tuple(out)


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """Rank of the module's layer (0 = top, the CLI), or None when no layer names it."""
    if module == PACKAGE:
        return len(LAYERS) - 1
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(_inside(module, p) for p in prefixes):
            return rank
    return None


# ------------------------------------------------------------------------------------- checks


def module_level_cycles(imports: Iterable[Import]) -> list[frozenset[str]]:
    """Strongly connected groups of two or more modules of the package, module-level imports only."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.lazy and _inside(imp.target, PACKAGE) and imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[frozenset[str]] = []

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(frozenset(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return groups


def cycle_errors(imports: Sequence[Import], allowed: Iterable[frozenset[str]] = ALLOWED_CYCLES) -> list[str]:
    """One message per module-level cycle that is not allowed, with the imports that close it."""
    allowed = list(allowed)
    errors = []
    for group in module_level_cycles(imports):
        if any(group <= ok for ok in allowed):
            continue
        edges = sorted(
            (str(i) for i in imports if not i.lazy and i.importer in group and i.target in group),
        )
        errors.append(f"import cycle among {', '.join(sorted(group))}: " + "; ".join(edges))
    return errors


def lab_errors(imports: Iterable[Import], commands: frozenset[tuple[str, str]] = LAB_COMMANDS) -> list[str]:
    """Imports of the lab by product modules, outside the CLI's listed lab commands."""
    return [
        f"{imp}: product code must not import {LAB} (only the CLI's lab commands, lazily)"
        for imp in imports
        if _inside(imp.target, LAB)
        and not _inside(imp.importer, LAB)
        and (imp.importer, imp.scope) not in commands
    ]


def layer_errors(
    imports: Iterable[Import],
    allowed: Mapping[tuple[str, str], str] = ALLOWED_LAYER_IMPORTS,
    layer: Callable[[str], int | None] = layer_of,
) -> list[str]:
    """Imports from a higher layer than the importer's own, minus the allowed ones."""
    errors = []
    for imp in imports:
        if not _inside(imp.target, PACKAGE) or (imp.importer, imp.target) in allowed:
            continue
        mine, theirs = layer(imp.importer), layer(imp.target)
        if mine is None or theirs is None:
            continue  # test_every_module_has_a_layer reports these
        if theirs < mine:
            upper = LAYERS[theirs][0]
            errors.append(f"{imp}: layer {LAYERS[mine][0]!r} must not import from the higher layer {upper!r}")
    return errors


def core_modules(modules: Iterable[str]) -> list[str]:
    """The modules rule (d) covers: the core packages and the providers' sans-I/O modules."""
    out = []
    for name in modules:
        parts = name.split(".")
        provider_core = (
            len(parts) == 4 and parts[1] == "providers" and parts[3] in ("stream", "messages")
        ) or name in SANS_IO_PROVIDER_MODULES
        if name in PROVIDER_SHELLS:
            continue
        if provider_core or any(_inside(name, p) for p in CORE_PACKAGES):
            out.append(name)
    return sorted(out)


def core_io_errors(
    imports: Sequence[Import],
    cores: Iterable[str],
    allowed: Mapping[tuple[str, str], str] = ALLOWED_CORE_IO,
) -> list[str]:
    """Cores that reach an I/O library, directly or through modules of the package they import."""
    by_importer: dict[str, list[Import]] = {}
    for imp in imports:
        by_importer.setdefault(imp.importer, []).append(imp)
    errors = []
    for core in cores:
        path: dict[str, Import | None] = {core: None}
        todo = [core]
        while todo:
            module = todo.pop()
            for imp in by_importer.get(module, []):
                library = imp.target.split(".")[0]
                if library in IO_LIBRARIES:
                    if (core, library) in allowed:
                        continue
                    chain = [imp]
                    step = path[module]
                    while step is not None:
                        chain.append(step)
                        step = path[step.importer]
                    errors.append(f"core {core} reaches {library}: " + " <- ".join(str(i) for i in chain))
                elif _inside(imp.target, PACKAGE) and imp.target not in path:
                    path[imp.target] = imp
                    todo.append(imp.target)
    return errors


# -------------------------------------------------------------------------------------- tests


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in package_modules() if layer_of(m) is None]
    assert not unplaced, f"place these modules in LAYERS (tests/test_layers.py): {unplaced}"


def test_no_import_cycle_at_module_level() -> None:
    errors = cycle_errors(current_imports())
    assert not errors, "\n".join(errors)


def test_no_product_module_imports_the_lab() -> None:
    errors = lab_errors(current_imports())
    assert not errors, "\n".join(errors)


def test_modules_import_only_their_own_layer_or_lower() -> None:
    errors = layer_errors(current_imports())
    assert not errors, "\n".join(errors)


def test_cores_import_no_asyncio_aiohttp_websockets_or_uvloop() -> None:
    cores = core_modules(package_modules())
    assert "mediasrv.turns.detector" in cores and "mediasrv.providers.soniox.stream" in cores
    errors = core_io_errors(current_imports(), cores)
    assert not errors, "\n".join(errors)


def test_allow_lists_have_no_stale_entries() -> None:
    imports = current_imports()
    modules = package_modules()
    stale: list[str] = []
    groups = module_level_cycles(imports)
    stale += [f"ALLOWED_CYCLES: {sorted(ok)} is no cycle now" for ok in ALLOWED_CYCLES if ok not in groups]
    for module, function in sorted(LAB_COMMANDS):
        if not any(i.importer == module and i.scope == function and _inside(i.target, LAB) for i in imports):
            stale.append(f"LAB_COMMANDS: {module}.{function} imports no lab module now")
    for importer, target in ALLOWED_LAYER_IMPORTS:
        used = [i for i in imports if (i.importer, i.target) == (importer, target)]
        if not used or not layer_errors(used, allowed={}):
            stale.append(f"ALLOWED_LAYER_IMPORTS: {importer} -> {target} is no layer violation now")
    cores = core_modules(modules)
    for core, library in ALLOWED_CORE_IO:
        if not any(library in e for e in core_io_errors(imports, [core], allowed={})):
            stale.append(f"ALLOWED_CORE_IO: {core} no longer reaches {library}")
        if core not in cores:
            stale.append(f"ALLOWED_CORE_IO: {core} is not a core")
    stale += [
        f"SANS_IO_PROVIDER_MODULES / PROVIDER_SHELLS: no module {m}"
        for m in SANS_IO_PROVIDER_MODULES + PROVIDER_SHELLS
        if m not in modules
    ]
    assert not stale, "remove these entries from tests/test_layers.py:\n" + "\n".join(stale)


# ----------------------------------------------------------------------- the checker checked


SYNTHETIC_MODULES = (
    "mediasrv",
    "mediasrv.cli",
    "mediasrv.server",
    "mediasrv.lab",
    "mediasrv.lab.demo",
    "mediasrv.agent",
    "mediasrv.agent.a",
    "mediasrv.agent.b",
    "mediasrv.agent.c",
    "mediasrv.turns",
    "mediasrv.turns.x",
    "mediasrv.turns.y",
    "mediasrv.errors",
)


def _synthetic(source_by_module: Mapping[str, str]) -> list[Import]:
    out: list[Import] = []
    for name, source in source_by_module.items():
        is_package = name in ("mediasrv", "mediasrv.lab", "mediasrv.agent", "mediasrv.turns")
        out += module_imports(name, source, SYNTHETIC_MODULES, is_package=is_package)
    return out


def test_the_reader_resolves_relative_lazy_guarded_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "from .b import thing\n"
        "from ..turns import x\n"
        "import mediasrv.turns.y\n"
        "if TYPE_CHECKING:\n"
        "    from mediasrv.agent import c\n"
        "def f():\n"
        "    from mediasrv.lab import demo\n"
        "class K:\n"
        "    import asyncio\n"
        "    def m(self):\n"
        "        import aiohttp\n"
        "if __name__ == '__main__':\n"
        "    from mediasrv import cli\n"
    )
    got = {(i.target, i.scope) for i in module_imports("mediasrv.agent.a", source, SYNTHETIC_MODULES)}
    assert got == {
        ("typing", ""),
        ("mediasrv.agent.b", ""),
        ("mediasrv.turns.x", ""),
        ("mediasrv.turns.y", ""),
        ("mediasrv.lab.demo", "f"),
        ("asyncio", ""),
        ("aiohttp", "K.m"),
        ("mediasrv.cli", "__main__"),
    }
    package = module_imports(
        "mediasrv.turns", "from . import x\nfrom .y import Y\n", SYNTHETIC_MODULES, is_package=True
    )
    assert {i.target for i in package} == {"mediasrv.turns.x", "mediasrv.turns.y"}


def test_the_checker_reports_cycles_lab_imports_layer_and_core_violations() -> None:
    imports = _synthetic(
        {
            # a <-> b at module level: a cycle; b <-> c only through a function: none.
            "mediasrv.agent.a": "from mediasrv.agent import b\n",
            "mediasrv.agent.b": "from mediasrv.agent.a import A\nfrom mediasrv.agent.c import C\n",
            "mediasrv.agent.c": "def f():\n    import mediasrv.agent.b\n",
            # the daemon imports the lab; the CLI does too, in a listed command and in another place.
            "mediasrv.server": "from mediasrv.lab.demo import Demo\n",
            "mediasrv.cli": (
                "def _demo():\n    from mediasrv.lab import demo\ndef other():\n    import mediasrv.lab\n"
            ),
            # a core imports the agent (layer), and reaches asyncio through a sibling.
            "mediasrv.turns.x": "from mediasrv.agent.c import C\nfrom mediasrv.turns import y\n",
            "mediasrv.turns.y": "import asyncio\nfrom mediasrv.errors import E\n",
            "mediasrv.errors": "import os\n",
        }
    )
    cycles = cycle_errors(imports, allowed=())
    assert len(cycles) == 1 and "mediasrv.agent.a, mediasrv.agent.b:" in cycles[0]
    assert "mediasrv.agent.a:1 imports mediasrv.agent.b" in cycles[0]
    assert cycle_errors(imports, allowed=[frozenset({"mediasrv.agent.a", "mediasrv.agent.b"})]) == []

    labs = lab_errors(imports, commands=frozenset({("mediasrv.cli", "_demo")}))
    assert labs == [
        "mediasrv.server:1 imports mediasrv.lab.demo: product code must not import mediasrv.lab "
        "(only the CLI's lab commands, lazily)",
        "mediasrv.cli:4 imports mediasrv.lab (in other): product code must not import mediasrv.lab "
        "(only the CLI's lab commands, lazily)",
    ]

    layers = layer_errors(imports, allowed={})
    assert layers == [
        "mediasrv.server:1 imports mediasrv.lab.demo: layer 'daemon' must not import from the higher "
        "layer 'lab'",
        "mediasrv.turns.x:1 imports mediasrv.agent.c: layer 'core' must not import from the higher "
        "layer 'agent'",
    ]
    assert not any(
        "mediasrv.turns.x" in e
        for e in layer_errors(imports, allowed={("mediasrv.turns.x", "mediasrv.agent.c"): ""})
    )

    core_io = core_io_errors(imports, ["mediasrv.turns.x", "mediasrv.errors"], allowed={})
    assert core_io == [
        "core mediasrv.turns.x reaches asyncio: mediasrv.turns.y:1 imports asyncio "
        "<- mediasrv.turns.x:2 imports mediasrv.turns.y"
    ]
    assert core_io_errors(imports, ["mediasrv.turns.x"], allowed={("mediasrv.turns.x", "asyncio"): ""}) == []
