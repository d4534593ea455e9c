"""The house shows its layers: Qt stays out of the core, imports point down, no circles.

Checked by tooling (import-linter contracts in pyproject.toml) and directly,
walking every sub-package so a new package cannot silently escape the check.
"""

import ast
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tlapp

ROOT = Path(__file__).resolve().parents[1]


def _core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(tlapp.__path__, "tlapp.") if not m.name.endswith("__main__")]


def test_walk_finds_every_subpackage():
    names = set(_core_modules())
    for pkg in ("base", "data", "backbones", "model", "deploy", "training", "cli"):
        assert f"tlapp.{pkg}" in names
    on_disk = {
        p
        for p in (ROOT / "tlapp").rglob("*.py")
        if p.name != "__main__.py" and p.parent != ROOT / "tlapp" or p.name not in ("__init__.py", "__main__.py")
    }
    assert len(names) == len(on_disk)


def test_core_never_imports_qt():
    code = (
        "import sys, importlib, pkgutil, tlapp\n"
        "for m in pkgutil.walk_packages(tlapp.__path__, 'tlapp.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'gui'))]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-500:]


def test_no_private_names_imported_across_modules():
    offenders = []
    for path in list((ROOT / "tlapp").rglob("*.py")) + list((ROOT / "gui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("tlapp", "gui")):
                offenders += [
                    f"{path.relative_to(ROOT)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not offenders, offenders


def test_import_linter_contracts():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is not installed: it is a dev dependency (pip install -e .[dev])")
    proc = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Layers: imports only point down KEPT" in proc.stdout


def test_no_import_circles():
    import grimp  # installed with import-linter (dev extras): missing, the test fails

    # Imports under `if TYPE_CHECKING:` never run; they only name a type for the reader and mypy.
    graph = grimp.build_graph("tlapp", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph.find_modules_directly_imported_by(m)):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[m] = 2

    for m in modules:
        if m not in state:
            visit(m, [m])
    # A package's __init__ importing its own children is not a circle of behaviour.
    cycles = [c for c in cycles if not any(a == "tlapp" or b == "tlapp" for a, b in zip(c, c[1:]))]
    assert not cycles, cycles
