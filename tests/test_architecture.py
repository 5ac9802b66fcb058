"""The architecture holds: packages import one way, down; no module circles; the edge stays lean.

Layers, lowest first: the shared core (top-level `chalicelib` modules), `accounts`, `presence`,
`live`, `api`, `web` (the pages). A module may import its own package and any layer below it.
The SIP edge may import only the core (it reaches everything else through the functions,
`edge_contract`). Around the product: the tests and the benchmarks never import each other
(what both need lives in `testkit`, which imports neither), and the product imports none of
the three.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = ["core", "accounts", "presence", "live", "api", "web"]
EDGE_MAY_IMPORT = {
    "chalicelib.settings",
    "chalicelib.edge_contract",
    "chalicelib.digest",
    "chalicelib.errors",
    "chalicelib.observability",
    "chalicelib.aws",
    "chalicelib.clock",
    "chalicelib.resilience",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(*roots: str) -> dict[str, Path]:
    return {module_name(p): p for r in roots for p in sorted((ROOT / r).rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports, lazily or not, resolved to the module itself."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in known:
                out.add(name)
    # `from chalicelib.accounts import store` names both the package and the module: keep the
    # most specific one (the package's __init__ is imported too, but by the module's own rule).
    return {n for n in out if not any(o.startswith(n + ".") for o in out)}


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "chalicelib":
        return parts[0]
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    return "core"


CHALICELIB = modules("chalicelib")
EDGE = modules("sip_edge")
KNOWN = set(CHALICELIB) | set(EDGE)
PRODUCT = CHALICELIB | EDGE | modules("devstack", "infra") | {"app": ROOT / "app.py"}
BENCH, TESTS, TESTKIT = modules("bench"), modules("tests"), modules("testkit")
EVERYTHING = set(PRODUCT) | set(BENCH) | set(TESTS) | set(TESTKIT)
#: Who must not import whom, by top-level package.
FORBIDDEN = {
    "bench": ("tests",),
    "tests": ("bench",),
    "testkit": ("tests", "bench"),
    "product": ("tests", "bench", "testkit"),
}


def forbidden_imports(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    """The project modules `path` imports from the packages in `forbidden`."""
    return sorted(m for m in imports_of(path, EVERYTHING) if m.split(".")[0] in forbidden)


@pytest.mark.parametrize("module", sorted(CHALICELIB))
def test_chalicelib_imports_run_down(module: str) -> None:
    mine = LAYERS.index(layer(module))
    upward = [
        imported
        for imported in imports_of(CHALICELIB[module], KNOWN)
        if imported.startswith("chalicelib") and LAYERS.index(layer(imported)) > mine
    ]
    assert not upward, f"{module} ({layer(module)}) imports a higher layer: {upward}"


@pytest.mark.parametrize("module", sorted(EDGE))
def test_edge_imports_only_the_core_and_the_contract(module: str) -> None:
    domain = sorted(
        imported
        for imported in imports_of(EDGE[module], KNOWN)
        if imported.startswith("chalicelib") and imported not in EDGE_MAY_IMPORT
    )
    assert not domain, f"{module} imports domain modules: {domain}"


def test_no_import_circles() -> None:
    graph = {m: imports_of(p, KNOWN) - {m} for m, p in (CHALICELIB | EDGE).items()}
    # A package's __init__ may re-export its own modules; that is not a circle of concerns.
    for pkg in list(graph):
        graph[pkg] = {m for m in graph[pkg] if not m.startswith(pkg + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_core_stays_small() -> None:
    top = [p for p in (ROOT / "chalicelib").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 12, sorted(p.name for p in top)
    for pkg in LAYERS[1:]:
        init = ROOT / "chalicelib" / pkg / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{pkg} needs its charter"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from chalicelib.api import http_api\nimport chalicelib.live.updates\n")
    assert imports_of(bad, KNOWN) == {"chalicelib.api.http_api", "chalicelib.live.updates"}


def test_the_edge_calls_only_functions_the_contract_names() -> None:
    import app
    from chalicelib import edge_contract

    for name in edge_contract.FUNCTIONS:
        assert callable(getattr(app, name, None)), f"app.py has no function {name}"
    for module, path in EDGE.items():
        assert 'functions.call("' not in path.read_text(), f"{module}: name it in edge_contract"


@pytest.mark.parametrize(
    "who, mods",
    [("bench", BENCH), ("tests", TESTS), ("testkit", TESTKIT), ("product", PRODUCT)],
)
def test_tests_benchmarks_and_product_keep_apart(who: str, mods: dict[str, Path]) -> None:
    bad = {m: found for m, p in mods.items() if (found := forbidden_imports(p, FORBIDDEN[who]))}
    assert not bad, f"{who} imports {'/'.join(FORBIDDEN[who])} (move it to testkit): {bad}"


def test_the_checker_sees_bench_and_tests_importing_each_other(tmp_path: Path) -> None:
    bench_side = tmp_path / "bench_side.py"
    bench_side.write_text("def f():\n    from tests.conftest import ROOT\n")
    assert forbidden_imports(bench_side, FORBIDDEN["bench"]) == ["tests.conftest"]
    tests_side = tmp_path / "tests_side.py"
    tests_side.write_text("import bench.edge\nfrom bench import chaos\n")
    assert forbidden_imports(tests_side, FORBIDDEN["tests"]) == ["bench.chaos", "bench.edge"]
