"""The stand-ins know the vendors and the config files' format, never the pipeline's code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import health_score_sandbox

PACKAGE = Path(health_score_sandbox.__file__).resolve().parent


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_stand_in_module_imports_the_pipeline() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 10
    for path in modules:
        product = {n for n in _imported(path) if n.split(".")[0] == "health_score"}
        assert product == set(), path.name


def test_loading_every_stand_in_loads_no_pipeline_module() -> None:
    names = [f"health_score_sandbox.{p.stem}" for p in sorted(PACKAGE.glob("*.py"))]
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'health_score'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
