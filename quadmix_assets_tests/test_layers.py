"""The layer rules of the design card, enforced by import-linter (contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def test_layer_contracts_hold():
    res = subprocess.run(LINT, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_mixing_has_its_layers_contract_and_no_import_circle():
    """``quadmix_assets.mixing`` is layered (fan-in interface > DuckDB engine > scores | features | store >
    specs, a contract in pyproject.toml) and none of its modules reaches itself again through any chain of
    imports in the package (imports inside functions included)."""
    import tomllib

    import grimp

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = [c for c in contracts if c["type"] == "layers" and c.get("containers") == ["quadmix_assets.mixing"]]
    assert len(layers) == 1 and layers[0].get("exhaustive") is True
    graph = grimp.build_graph("quadmix_assets")
    mixing = sorted(m for m in graph.modules if m.startswith("quadmix_assets.mixing."))
    assert {"quadmix_assets.mixing.fanin", "quadmix_assets.mixing.fanin_duckdb", "quadmix_assets.mixing.features",
            "quadmix_assets.mixing.store", "quadmix_assets.mixing.scores", "quadmix_assets.mixing.specs"} <= set(mixing)
    circles = [(m, n) for m in mixing for n in graph.find_upstream_modules(m) if m in graph.find_upstream_modules(n)]
    assert circles == []


def test_a_forbidden_import_breaks_the_contract(tmp_path):
    """The same kind of contract on a small package with a library importing its Dagster layer fails."""
    pkg = tmp_path / "layered"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "defs").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "defs" / "__init__.py").write_text("")
    (pkg / "defs" / "assets.py").write_text("X = 1\n")
    (pkg / "lib" / "__init__.py").write_text("")
    (pkg / "lib" / "compute.py").write_text("from layered.defs.assets import X\n")
    (tmp_path / ".importlinter").write_text(textwrap.dedent("""
        [importlinter]
        root_package = layered

        [importlinter:contract:1]
        name = libraries do not import the Dagster layer
        type = forbidden
        source_modules = layered.lib
        forbidden_modules = layered.defs
    """))
    res = subprocess.run(LINT, cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode != 0 and "BROKEN" in res.stdout, res.stdout + res.stderr
    assert "layered.lib.compute -> layered.defs.assets" in res.stdout


# ---------------------------------------------------------------------------------------- import cycles
#: import cycles tolerated (none: the package's import graph has no circle)
KNOWN_CYCLES: tuple[frozenset[str], ...] = ()


def _strongly_connected(graph) -> list[set[str]]:
    """The import cycles of a grimp graph: its strongly connected components of more than one module
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.add(m)
                    if m == node:
                        break
                if len(component) > 1:
                    out.append(component)
    return out


def _import_graph():
    import grimp

    # every import counts, those inside functions too (grimp reads them all); external packages left out
    return grimp.build_graph("quadmix_assets", cache_dir=None)


def test_no_import_cycles():
    """No module of quadmix_assets reaches itself through imports (at module level or inside functions),
    apart from the known cycles other branches are removing."""
    cycles = [sorted(c) for c in _strongly_connected(_import_graph()) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_finder_finds_a_cycle(tmp_path):
    """The same search on a small package with a circle through an import inside a function finds it."""
    import grimp

    pkg = tmp_path / "circled"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from circled import b\n")
    (pkg / "b.py").write_text("def f():\n    from circled import c\n")
    (pkg / "c.py").write_text("import circled.a\n")
    (pkg / "d.py").write_text("import circled.a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("circled", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert _strongly_connected(graph) == [{"circled.a", "circled.b", "circled.c"}]


# ----------------------------------------------------------------------------- the defs folder's modules
DEFS = ROOT / "quadmix_assets" / "defs"


def _defs_imports():
    """(importing module, imported defs module, names) for every import of a defs module by a defs module."""
    import ast

    for path in sorted(DEFS.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("quadmix_assets.defs"):
                yield module, node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("quadmix_assets.defs"):
                        yield module, a.name, ["*module*"]


def test_defs_modules_import_only_definitions_from_their_domain():
    """A defs module imports nothing from another domain (by key instead: quadmix_assets.keys), and from a
    module of its own domain only Dagster definitions (assets, checks, jobs, or a list or dict of them):
    no helper, list of names or constant lives among the asset modules."""
    import importlib

    from dagster import AssetChecksDefinition, AssetsDefinition, JobDefinition, SensorDefinition
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

    definition = (AssetsDefinition, AssetChecksDefinition, JobDefinition, UnresolvedAssetJobDefinition, SensorDefinition)

    def is_definition(value) -> bool:
        if isinstance(value, definition):  # (a job definition is a record: a tuple)
            return True
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, (list, tuple)):
            return bool(value) and all(isinstance(v, definition) for v in value)
        return isinstance(value, definition)

    def domain(module: str) -> str:
        parts = module.split(".")
        return parts[2] if len(parts) > 2 else ""

    bad = []
    for importer, imported, names in _defs_imports():
        if imported in ("quadmix_assets.defs",) or domain(importer) != domain(imported) or not domain(imported):
            bad.append(f"{importer} imports {imported} ({', '.join(names)})")
            continue
        mod = importlib.import_module(imported)
        bad += [f"{importer} imports {n} from {imported}: not a Dagster definition" for n in names
                if n == "*module*" or not is_definition(getattr(mod, n))]
    assert not bad, "\n".join(bad)
