"""No import cycles among hearthnet modules.

Static: every module's `import` / `from ... import` statements are read with `ast`, at any
depth (a function-level import is still an import: it just hides the cycle until that
function runs), except under `if TYPE_CHECKING:`, which never runs. `from pkg import name`
is an edge to `pkg.name` when that is a module, else to `pkg`. Importing `a.b` is not
counted as importing the package `a` (its `__init__` may re-export `a.b`; that is not a
design cycle).
"""
from __future__ import annotations

import ast
from pathlib import Path

import hearthnet

PACKAGE_DIR = Path(hearthnet.__file__).resolve().parent

# Known cycles still to be broken, each named; the test fails if one disappears, so the
# allowance is deleted together with the fix.
ALLOWED_CYCLES: dict[str, frozenset[str]] = {
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import under `node`, skipping the body (not the else) of `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                found.extend(_import_nodes(ast.Module(body=[sub], type_ignores=[])))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        found.extend(_import_nodes(child))
    return found


def _resolve_from(name: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    targets: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        source = _resolve_from(name, node, path.name == "__init__.py")
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            targets.add(sub if sub in modules else source)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm (iterative); only components of 2+ modules or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members: set[str] = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    members.add(top)
                    if top == node:
                        break
                if len(members) > 1 or node in graph[node]:
                    components.append(frozenset(members))
    return components


def _path_within(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    """One concrete cycle inside a component, for a readable failure."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & component)
        back = [n for n in nxt if n in seen]
        if back:
            return path[path.index(back[0]):] + [back[0]]
        fresh = [n for n in nxt if n not in seen]
        path.append(fresh[0])
        seen.add(fresh[0])


def test_detector_counts_function_level_imports_but_not_type_checking_ones() -> None:
    src = ("def f():\n    from hearthnet.config import Config\n"
           "if TYPE_CHECKING:\n    import hearthnet.errors\nelse:\n    import hearthnet.paths\n")
    names = {n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in _import_nodes(ast.parse(src))}
    assert names == {"hearthnet.config", "hearthnet.paths"}


def test_detector_resolves_relative_and_submodule_imports(tmp_path: Path) -> None:
    mod = tmp_path / "service.py"
    mod.write_text("from . import cache\nfrom .registry import PeerRegistry\n"
                   "from hearthnet.gateway import introspect\n")
    modules = all_modules()
    assert imports_of("hearthnet.discovery.service", mod, modules) == {
        "hearthnet.discovery.cache", "hearthnet.discovery.registry", "hearthnet.gateway.introspect"}


def test_detector_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["e"]]
    assert _path_within(graph, frozenset({"a", "b", "c"})) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = strongly_connected(graph)
    allowed = set(ALLOWED_CYCLES.values())
    unexpected = [" -> ".join(_path_within(graph, c)) for c in cycles if c not in allowed]
    assert not unexpected, "import cycles:\n" + "\n".join(unexpected)


def test_allowed_cycles_still_exist() -> None:
    # An allowance outliving its cycle would hide the next one between the same modules.
    cycles = set(strongly_connected(import_graph()))
    stale = [name for name, members in ALLOWED_CYCLES.items() if members not in cycles]
    assert not stale, f"cycle fixed: delete its allowance in ALLOWED_CYCLES: {stale}"
