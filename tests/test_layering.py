"""Imports go one way: no circles (type-only and function-local imports included), no arrow up.

Every module of ``sidu`` and ``sidu_bench`` is parsed with :mod:`ast`; every ``import`` and
``from ... import`` statement anywhere in it (inside ``if TYPE_CHECKING:`` and inside functions
too) is an arrow to the module it names (``from a.b import c`` names ``a.b.c`` when that is a
module, else ``a.b``). The layers, lowest first::

    sidu  <-  shared bottom modules  <-  metrics, data, models  <-  explainers, tables, training
          <-  runner, plugins  <-  bench, report, html_report, compare  <-  cli

A module may import its own layer or lower ones; metrics, data and models never import each
other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sidu", "sidu_bench")

LAYERS = (
    ("sidu",),
    (
        "sidu_bench",
        "sidu_bench.devices",
        "sidu_bench.domains",
        "sidu_bench.errors",
        "sidu_bench.io",
        "sidu_bench.registry",
        "sidu_bench.stats",
    ),
    ("sidu_bench.data", "sidu_bench.metrics", "sidu_bench.models"),
    ("sidu_bench.explainers", "sidu_bench.tables", "sidu_bench.training"),
    ("sidu_bench.plugins", "sidu_bench.runner"),
    ("sidu_bench.bench", "sidu_bench.compare", "sidu_bench.html_report", "sidu_bench.report"),
    ("sidu_bench.cli", "sidu_bench.__main__"),
)
"""Each layer's modules and packages (a package stands for all its modules)."""

SEPARATE = ("sidu_bench.data", "sidu_bench.metrics", "sidu_bench.models")
"""Packages of one layer that must not import one another."""


def module_files() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its ``__init__``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = module_files()


def imported(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.add(child if child in MODULES else base)
    return {target for target in targets if target in MODULES}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def owner(module: str, groups: tuple[str, ...]) -> str | None:
    """The most specific entry of ``groups`` that is ``module`` or a package holding it.

    The root package ``sidu_bench`` stands for its ``__init__`` only.
    """
    matches = [
        group
        for group in groups
        if module == group or (group != "sidu_bench" and module.startswith(f"{group}."))
    ]
    return max(matches, key=len) if matches else None


def layer_of(module: str) -> int:
    """The index of the layer ``module`` belongs to (the most specific entry wins)."""
    matches = [
        (len(group), index)
        for index, groups in enumerate(LAYERS)
        for group in groups
        if owner(module, (group,))
    ]
    assert matches, f"{module} is in no layer of LAYERS: add it where it belongs"
    return max(matches)[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_modules_are_found_and_their_imports_resolved():
    assert {"sidu", "sidu_bench.registry", "sidu_bench.io", "sidu_bench.cli"} <= set(MODULES)
    assert "sidu_bench.data.items" in GRAPH["sidu_bench.data.registry"]
    assert "sidu_bench.runner.distributed" in GRAPH["sidu_bench.runner.run"]


def test_the_checks_catch_a_circle_and_an_upward_arrow():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("sidu_bench.data.items") < layer_of("sidu_bench.explainers.base")
    assert layer_of("sidu_bench.io") < layer_of("sidu_bench.data") < layer_of("sidu_bench.cli")


def test_no_import_circles():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    upward = [target for target in GRAPH[module] if layer_of(target) > layer_of(module)]
    assert upward == [], f"{module} (layer {layer_of(module)}) imports a higher layer: {upward}"


def test_data_metrics_and_models_do_not_import_one_another():
    crossing = [
        (module, target)
        for module, targets in GRAPH.items()
        for target in targets
        if owner(module, SEPARATE)
        and owner(target, SEPARATE)
        and owner(module, SEPARATE) != owner(target, SEPARATE)
    ]
    assert crossing == []
