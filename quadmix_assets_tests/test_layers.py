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
