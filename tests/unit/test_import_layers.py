"""The layer rules of docs/architecture.md, enforced over the source's imports (AST).

Every ``import`` counts, including ones inside functions and under ``TYPE_CHECKING``:
a lazy import is still a dependency, and a type-only import still ties two rooms.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "engine", "db", "scraper")
BASE = {"engine.config", "engine.types", "engine.errors", "engine.api", "engine"}
COMPOSITION_ROOT = {"bot.cli", "bot.app", "bot.demo"}  # builds the service and starts front-ends

# room → rooms it may import besides itself and the base layer (prefix match on module names)
ENGINE_ROOMS = {
    "engine.vision": set(),
    "engine.styles": {"engine.vision"},
    "engine.catalogue": {"engine.vision", "db", "scraper"},
    "engine.trends": {"engine.vision", "engine.catalogue", "db", "scraper"},
    "engine.training": {"engine.vision", "engine.catalogue"},
    "engine.service": {"engine.vision", "engine.catalogue", "engine.styles", "engine.trends", "db"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """Our modules this file imports (absolute names; ``from x import y`` counts y when
    y is a module of ours)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    ours = {m for m in found if m.split(".")[0] in PACKAGES}
    return {m for m in ours if _is_module(m)}


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


GRAPH = {module_name(p): imports_of(p) for p in sources()}


def room_of(module: str) -> str:
    if module in BASE:
        return "base"
    if module in COMPOSITION_ROOT:
        return "root"
    for room in sorted(ENGINE_ROOMS, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return module.split(".")[0]


def allowed(importer: str, imported: str) -> bool:
    src, dst = room_of(importer), room_of(imported)
    if dst == "base":
        return True
    if src == "base":
        return False  # the base layer imports nothing of ours but itself
    if src == dst:
        return True
    if src in ("db", "scraper"):
        return False  # the bottom layers import only the base layer
    if src == "bot":
        return False  # front-ends: the base layer (with the service API) and their shared flows only
    if src == "root":
        # the service to build, the operator's training room, the demo's own shop
        # (and the demo builds its shop's products from the Fashion-MNIST reader)
        return dst == "bot" or imported in (
            "engine.service",
            "engine.training",
            "engine.training.cli",
            "scraper.demo_shop",
            "engine.catalogue.ingest",
        )
    return dst in ENGINE_ROOMS.get(src, set())


def violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} imports {b}" for a, deps in graph.items() for b in deps if b != a and not allowed(a, b))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w == v or _is_package(w):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _is_package(name: str) -> bool:
    """A package's ``__init__`` re-exporting its modules is not a cycle with them."""
    return (ROOT.joinpath(*name.split(".")) / "__init__.py").is_file()


def test_no_import_runs_up_the_layers() -> None:
    assert violations(GRAPH) == []


def test_no_import_circles() -> None:
    assert cycles(GRAPH) == []


def test_base_layer_imports_nothing_of_ours_but_itself() -> None:
    for module in BASE - {"engine"}:
        assert GRAPH[module] <= BASE, module


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"scraper.crawl": {"engine.vision.images"}}, ["scraper.crawl imports engine.vision.images"]),
        ({"db.store": {"engine.service"}}, ["db.store imports engine.service"]),
        ({"bot.telegram.handlers": {"engine.vision.images"}}, ["bot.telegram.handlers imports engine.vision.images"]),
        (
            {"engine.vision.embedder": {"engine.catalogue.index"}},
            ["engine.vision.embedder imports engine.catalogue.index"],
        ),
        ({"engine.config": {"bot.settings"}}, ["engine.config imports bot.settings"]),
        ({"bot.cli": {"engine.service"}, "bot.web.routes": {"engine.types", "bot.flows"}}, []),
    ],
)
def test_the_checker_catches_each_kind_of_violation(graph: dict[str, set[str]], expected: list[str]) -> None:
    assert violations(graph) == expected


def test_the_checker_finds_a_circle() -> None:
    graph = {"engine.vision.a": {"engine.vision.b"}, "engine.vision.b": {"engine.vision.a"}}
    assert cycles(graph) == [["engine.vision.a", "engine.vision.b"]]
