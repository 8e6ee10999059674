"""The house's layout (DESIGN §3): top-level packages import each other in one direction only,
and no product module is so long that it must hold more than one responsibility.

The package graph is read from the source of every product module: every ``import`` and
``from ... import`` anywhere in it (also the lazy ones inside functions, relative imports
resolved) and every ``importlib.import_module("...")`` with a literal name. ``FLOORS`` is the
intended layout, top floor first; a package may import only packages on floors below its own.
A new top-level package fails here until it is given its floor.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_PRODUCT = frozenset({"tests", "bench"})
MAX_MODULE_LINES = 650
# Alembic's revisions are a history of the schema, one step a file, not modules to split.
SIZE_EXEMPT = ("statestore/migrations/",)

FLOORS: tuple[tuple[str, ...], ...] = (
    ("intake",),  # the commands: the `intake` command line and the vendors' client
    ("receiver",),  # HTTP: routes, auth, problems; in embedded mode it starts the consumers
    ("consumers", "review"),  # consumer services; review logic shared by HTTP and the CLI
    ("wiring",),  # settings, the runtime that builds the adapters, metrics, logging
    ("statestore",),  # the state, receipt and review stores
    ("validators", "eventlog", "identity"),  # items against models; the log port; identifiers
    ("schemas",),  # the model definitions
)


def product_packages() -> list[str]:
    return sorted(
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file() and p.name not in NOT_PRODUCT
    )


def product_modules() -> Iterator[tuple[str, Path]]:
    for package in product_packages():
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(root).parts[:-1])  # a module's package, or __init__'s own
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from receiver import routes` names a module too
                yield node.lineno, f"{module}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the places (file:line) that import it."""
    packages = set(product_packages())
    graph: dict[str, dict[str, list[str]]] = {p: defaultdict(list) for p in packages}
    for package, path in product_modules():
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in packages and top != package:
                place = f"{path.relative_to(ROOT)}:{line}"
                if place not in graph[package][top]:
                    graph[package][top].append(place)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_cycle_between_top_level_packages() -> None:
    graph = package_graph()
    knots = cycles(graph)
    explained = [
        f"{' ↔ '.join(knot)}: "
        + "; ".join(
            f"{a} → {b} ({', '.join(graph[a][b][:3])})" for a in knot for b in knot if b in graph[a]
        )
        for knot in knots
    ]
    assert not knots, "cycles between top-level packages:\n" + "\n".join(explained)


def test_every_package_has_a_floor_and_imports_only_below_it() -> None:
    floor_of = {p: n for n, floor in enumerate(FLOORS) for p in floor}
    packages = product_packages()
    unplaced = [p for p in packages if p not in floor_of]
    assert not unplaced, f"give these packages a floor in FLOORS: {unplaced}"
    graph = package_graph()
    upward = [
        f"{a} → {b} ({', '.join(places[:3])})"
        for a in packages
        for b, places in sorted(graph[a].items())
        if floor_of[b] <= floor_of[a]
    ]
    assert not upward, "imports of a package on the same floor or above:\n" + "\n".join(upward)


def test_no_product_module_over_the_limit() -> None:
    long = []
    for _, path in product_modules():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(SIZE_EXEMPT):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            long.append(f"{relative}: {lines} lines")
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split along a seam):\n" + "\n".join(
        long
    )


def test_the_graph_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks above are only as good as the reader: a lazy import in a function, a relative
    import and import_module with a literal name all count."""
    (tmp_path / "receiver" / "routes").mkdir(parents=True)
    probe = tmp_path / "receiver" / "routes" / "probe.py"
    source = (
        "import importlib\n"
        "def f():\n"
        "    from statestore import engine\n"
        "    importlib.import_module('eventlog.kafka')\n"
        "from .state import router\n"
        "from .. import deps\n"
    )
    probe.write_text(source, encoding="utf-8")
    modules = {m for _, m in imported_modules(probe, tmp_path)}
    assert {"statestore", "eventlog.kafka", "receiver.routes.state", "receiver.deps"} <= modules


def test_a_cycle_is_found() -> None:
    graph: dict[str, dict[str, list[str]]] = {
        "a": {"b": ["a/x.py:1"]},
        "b": {"c": ["b/y.py:2"]},
        "c": {"a": ["c/z.py:3"]},
        "d": {"a": ["d/w.py:4"]},
    }
    assert cycles(graph) == [["a", "b", "c"]]
