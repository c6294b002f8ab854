"""The layering of ``src/kahu`` (docs/development.md), checked by reading the source: no
import cycle between top-level packages, operators see only their services, and unscoped
catalog reads exist only where the instance acts for itself."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import kahu
from kahu.catalog.dicom_query import DicomQuery
from kahu.catalog.repository import Catalog
from kahu.catalog.scope import SeriesScope
from kahu.search.aggregations import aggregate
from kahu.search.facts import field_values
from kahu.search.series import search_series

ROOT = Path(kahu.__file__).parent

#: where the system context (every series, no caller) may be used: the administrator's own
#: command line, which holds the database anyway
SYSTEM_ALLOWED = {"cli/commands.py"}
#: where a scope may be made from project keys: the policy, and the paths that build one
#: for a run, a cohort or a DICOM node from what the policy tables say
SCOPE_MADE = {
    "catalog/scope.py",
    "auth/policy.py",
    "flow/services.py",
    "flow/cohort.py",
    "dimse/handlers.py",
}


#: the most lines a module of ``src/kahu`` has (docs/development.md)
MODULE_LINES = 600

#: the layers of docs/development.md, lowest first: a package imports from its own layer or
#: from those below it, never from above
LAYERS: list[set[str]] = [
    {"errors", "events", "storage", "dicom", "settings"},
    {"catalog"},
    {"audit", "auth", "search", "imports", "models"},
    {"dimse"},
    {"flow"},
    {"operators", "workflows", "federation", "schema"},
    {"core"},
    {"actions"},
    {"api", "dicomweb", "web"},
    {"app", "cli", "__main__"},
]


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def _unit(module: str) -> str | None:
    """The top-level package or module of ``kahu.x.y`` ("x"), None outside Kahu."""
    parts = module.split(".")
    return parts[1] if parts[0] == "kahu" and len(parts) > 1 else None


def _imports(tree: ast.Module) -> Iterator[str]:
    """Every module ``tree`` imports, at any depth (function-level imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "kahu":  # from kahu import cli_flow
                yield from (f"kahu.{alias.name}" for alias in node.names)
            else:
                yield node.module


def _exists(unit: str) -> bool:
    return (ROOT / unit).is_dir() or (ROOT / f"{unit}.py").exists()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for relative, tree in _modules():
        unit = relative.split("/")[0].removesuffix(".py")
        if unit == "__init__":
            continue
        for name in _imports(tree):
            target = _unit(name)
            if target is not None and target != unit and _exists(target):
                graph.setdefault(unit, set()).add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


class TestImports:
    def test_no_cycle_between_top_level_packages(self) -> None:
        assert _cycle(_graph()) is None

    def test_packages_import_only_their_layer_and_below(self) -> None:
        layer = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}
        graph = _graph()
        assert set(graph) <= set(layer), set(graph) - set(layer)  # a new package gets a layer
        upward = [(a, b) for a, targets in graph.items() for b in targets if layer[b] > layer[a]]
        assert upward == []

    def test_modules_stay_small(self) -> None:
        """A module holds one thing: past ~600 lines it is split by what it holds."""
        long = {
            relative: lines
            for relative, _ in _modules()
            if (lines := len((ROOT / relative).read_text().splitlines())) > MODULE_LINES
        }
        assert long == {}

    def test_the_cycle_finder_finds_one(self) -> None:
        assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
        assert _cycle({"a": {"b"}, "b": set()}) is None

    @pytest.mark.parametrize("package", ["operators", "workflows"])
    def test_operators_and_workflows_do_not_import_the_instance(self, package: str) -> None:
        forbidden = {"core", "app", "api", "web", "dicomweb", "cli"}
        found = [
            (relative, name)
            for relative, tree in _modules()
            if relative.startswith(f"{package}/")
            for name in _imports(tree)
            if _unit(name) in forbidden
        ]
        assert found == []

    def test_operators_take_services_not_the_instance(self) -> None:
        """Every internal operator's function takes (TaskContext, OperatorServices)."""
        targets = {
            target
            for relative, tree in _modules()
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            for target in re.findall(r"^kahu\.operators\.[a-z_.]+:[a-z_]+$", node.value)
        }
        assert len(targets) >= 10  # the finder finds the built-in operators
        found = {}
        for target in sorted(targets):
            module, name = target.split(":")
            function = getattr(importlib.import_module(module), name)
            found[target] = [p.annotation for p in inspect.signature(function).parameters.values()]
        assert {t: a for t, a in found.items() if a != ["TaskContext", "OperatorServices"]} == {}


def _calls(tree: ast.Module, attribute: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) in (attribute, attribute.split(".")[-1])
    ]


class TestScopes:
    def test_the_system_context_only_where_allowed(self) -> None:
        used = {
            relative
            for relative, tree in _modules()
            if _calls(tree, "SeriesScope.system") and relative != "catalog/scope.py"
        }
        assert used <= SYSTEM_ALLOWED, used - SYSTEM_ALLOWED

    def test_scopes_are_made_only_by_the_policy_paths(self) -> None:
        made = {relative for relative, tree in _modules() if _calls(tree, "SeriesScope")}
        assert made <= SCOPE_MADE, made - SCOPE_MADE

    @pytest.mark.parametrize(
        "function",
        [
            Catalog.get_series,
            Catalog.instances,
            Catalog.list_series,
            Catalog.counts,
            DicomQuery.search,
            search_series,
            aggregate,
            field_values,
        ],
        ids=lambda f: f.__qualname__,
    )
    def test_every_series_read_requires_a_scope(self, function: object) -> None:
        parameter = inspect.signature(function).parameters["scope"]  # type: ignore[arg-type]
        assert parameter.default is inspect.Parameter.empty
        assert parameter.annotation in ("SeriesScope", SeriesScope)
