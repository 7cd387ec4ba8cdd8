"""The package's import graph, read from the source with ``ast`` (nothing is imported).

Shared by ``tests/unit/test_layers.py`` (which asserts the layer order and the absence of
cycles) and ``benchmarks/import_graph.py`` (which prints the figures).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "health_score"

#: Lowest first: a module may import its own layer and the layers below, never one above.
#: A module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "records",
        (
            "health_score",
            "health_score.records",
            "health_score.numbers",
            "health_score.salesforce_ids",
            "health_score.deadline",
            "health_score.csvsafe",
        ),
    ),
    ("scoring", ("health_score.scoring",)),
    ("config", ("health_score.config",)),
    (
        "sources/loaders",
        (
            "health_score.sources",
            "health_score.loaders",
            "health_score.rawfile",
            "health_score.columns",
            "health_score.secrets",
            "health_score.redact",
            "health_score.envfile",
            "health_score.logging_setup",
            "health_score.backtest",
            "health_score.alerts",
        ),
    ),
    (
        "pipeline",
        (
            "health_score.pipeline",
            "health_score.batch",
            "health_score.backfill",
            "health_score.mapping_suggest",
        ),
    ),
    (
        "entry points",
        (
            "health_score.__main__",
            "health_score.cli",
            "health_score.aws_lambda",
            "health_score.dashboard",
            "health_score.lambda_package",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Import:
    """One import of a package module by another."""

    source: str
    target: str
    line: int
    top_level: bool  # runs when ``source`` is imported (not inside a function)
    dynamic: bool = False  # ``importlib.import_module("<literal>")``

    def __str__(self) -> str:
        kind = "dynamic" if self.dynamic else "module-level" if self.top_level else "local"
        return f"{self.source} → {self.target} (line {self.line}, {kind})"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Module name → file, for every module of the package."""
    return {module_name(path, src): path for path in sorted((src / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: Iterable[str]) -> None:
        self.module = module
        self.is_package = is_package
        self.known = frozenset(known)
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, target: str, node: ast.stmt | ast.expr, dynamic: bool = False) -> None:
        found = Import(self.module, target, node.lineno, self.depth == 0, dynamic)
        if target in self.known and target != self.module and found not in self.found:
            self.found.append(found)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # annotations only: never executed
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.module.split(".")
            keep = len(parts) - node.level + (1 if self.is_package else 0)
            base = ".".join([*parts[:keep], *([base] if base else [])])
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.known else base, node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if (
            name == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            self._add(node.args[0].value, node, dynamic=True)
        self.generic_visit(node)


def imports(modules: Mapping[str, Path] | None = None) -> list[Import]:
    """Every import between the package's modules (module-level, local and literal dynamic)."""
    modules = package_modules() if modules is None else modules
    found: list[Import] = []
    for name, path in modules.items():
        collector = _Collector(name, path.name == "__init__.py", modules)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.found)
    return found


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the module's layer; -1 when no layer claims it."""
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            exact_only = prefix == PACKAGE
            matches = module == prefix or (not exact_only and module.startswith(prefix + "."))
            if matches and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The import cycles: strongly connected groups of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)
