"""The layering rule, checked on the source: no module imports a higher floor or another package's
private module. Every import counts, also those inside functions and under ``TYPE_CHECKING``.

The floors (see ``../shared/DESIGN.md``): a package may use its own floor and those below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "llmbench"

FLOORS = {
    "errors": 0,
    "paths": 0,
    "measurement": 1,
    "models": 1,
    "store": 1,
    "planning": 1,
    "system": 1,
    "transport": 2,
    "scoring": 2,
    "tasks": 2,
    "backends": 3,
    "serving": 3,
    "harness": 4,
    "scenarios": 5,
    "selection": 6,
    "sweep": 6,
    "reports": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}


def _package(module: str) -> str:
    """``llmbench.serving._targets`` -> ``serving``; ``llmbench.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every ``llmbench`` import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("llmbench")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("llmbench"):
            module = str(node.module)
            found.append((node.lineno, module))
            # ``from llmbench.pkg import _private`` names a private module too
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names if a.name.startswith("_")]
    return found


def _violations(root: Path = SRC) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = _module_name(path, root)
        package = _package(importer) if importer != "llmbench.__main__" else "__main__"
        if importer == "llmbench.__init__":
            package = "__init__"
        floor = FLOORS.get(package)
        if floor is None:
            problems.append(f"{path.relative_to(root)}: package {package!r} has no floor in this test")
            continue
        for line, imported in _imports(path):
            target = _package(imported)
            if target == package or imported == "llmbench" or imported.startswith("llmbench.__"):
                continue  # the package itself (``from llmbench import __version__``)
            where = f"{path.relative_to(root)}:{line} imports {imported}"
            if FLOORS.get(target, 99) > floor:
                problems.append(f"{where} (floor {FLOORS.get(target)} above {package}'s {floor})")
            if any(part.startswith("_") and not part.startswith("__") for part in imported.split(".")[2:]):
                problems.append(f"{where} (a private module of {target})")
    return problems


def test_no_module_imports_a_higher_floor_or_a_private_module() -> None:
    assert _violations() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from llmbench.scenarios.single_run import run_benchmark\n", "floor 5 above"),
        ("from llmbench.serving._targets import api_key_from\n", "a private module of serving"),
        ("def f():\n    from llmbench.cli import main\n", "floor 7 above"),
        ("from llmbench.models import _tokens\n", "a private module of models"),
    ],
)
def test_the_checker_catches_each_kind(tmp_path: Path, source: str, expected: str) -> None:
    root = tmp_path / "llmbench"
    (root / "backends").mkdir(parents=True)
    (root / "backends" / "probe.py").write_text(source)
    problems = _violations(root)
    assert any(expected in problem for problem in problems), problems
