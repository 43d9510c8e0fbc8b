"""The layering of ``ARCHITECTURE.md``, checked from the source (issue #17).

An import may only point down: interfaces (cli, service, eval, report, the demo, the
contract checks) -> lifecycle (engine) -> capabilities (models, clone, immunity, ...) ->
persistence (store) -> domain (core). Only ``store/`` imports SQLAlchemy. No package holds
an import cycle among its modules. Imports under ``if TYPE_CHECKING:`` are for the type
checker only and are not counted; imports inside functions are.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "twinkit"

INTERFACES = {"cli", "service", "eval", "report", "demo", "checks", "__main__"}
LIFECYCLE = {"engine"}
PERSISTENCE = {"store"}
DOMAIN = {"core"}
#: the rank of each layer: an import may point to the same rank or a lower one
RANK = {"interface": 4, "lifecycle": 3, "capability": 2, "persistence": 1, "domain": 0}


def layer(part: str) -> str:
    """The layer of a top-level part of the package (a subpackage or a module)."""
    if part in INTERFACES:
        return "interface"
    if part in LIFECYCLE:
        return "lifecycle"
    if part in PERSISTENCE:
        return "persistence"
    if part in DOMAIN:
        return "domain"
    return "capability"  # models, clone, immunity, screen, data, personalize, edge, ...


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) of every import in the file, outside TYPE_CHECKING blocks.
    ``from a import b`` yields ``a.b`` when ``a/b.py`` (or a package) exists, else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)

    def visit(nodes: list[ast.stmt]) -> Iterator[tuple[int, str]]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    yield node.lineno, sub if _exists(sub) else base
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from visit([child])

    yield from visit(tree.body)


def _exists(dotted: str) -> bool:
    if not dotted.startswith("twinkit."):
        return False
    path = SRC.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _top(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if parts[0] == "twinkit" and len(parts) > 1 else None


def test_imports_only_point_down_the_layers() -> None:
    wrong = []
    for path in sources():
        mine = _top(module_name(path))
        if mine is None:
            continue  # twinkit/__init__.py: lazy names, resolved on first use
        for line, target in imports(path):
            theirs = _top(target)
            if theirs is None or theirs == mine:
                continue
            if RANK[layer(theirs)] > RANK[layer(mine)]:
                where = path.relative_to(SRC.parent)
                wrong.append(f"{where}:{line} ({layer(mine)}) imports {target} ({layer(theirs)})")
    assert wrong == [], "\n".join(wrong)


def test_only_the_store_imports_sqlalchemy() -> None:
    wrong = [
        f"{path.relative_to(SRC.parent)}:{line}"
        for path in sources()
        if _top(module_name(path)) != "store"
        for line, target in imports(path)
        if target.split(".")[0] == "sqlalchemy"
    ]
    assert wrong == []


def test_the_engine_imports_no_interface_nor_its_facade() -> None:
    wrong = [
        f"{path.relative_to(SRC.parent)}:{line} imports {target}"
        for path in sorted((SRC / "engine").glob("*.py"))
        if path.name not in ("twin_engine.py", "__init__.py")
        for line, target in imports(path)
        if target == "twinkit.engine.twin_engine"
        or layer(_top(target) or "core") == "interface"
        or target == "twinkit.engine"
    ]
    assert wrong == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as the modules along it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


@pytest.mark.parametrize(
    "package", sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
)
def test_no_package_holds_an_import_cycle(package: str) -> None:
    inside = f"twinkit.{package}"
    graph: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        if path.name == "__init__.py":
            continue  # a package's re-exports: importing one module runs it first anyway
        name = module_name(path)
        graph[name] = {
            target
            for _, target in imports(path)
            if target.startswith(inside + ".") and target != name
        }
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_checker_sees_a_cycle_and_a_wrong_import() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert RANK[layer("store")] < RANK[layer("engine")] < RANK[layer("service")]
