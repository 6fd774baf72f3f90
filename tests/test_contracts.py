"""The boundaries between the packages, as tests.

The TUI side never loads the heavy stack (import time and memory matter over SSH), and the
import contracts in pyproject.toml (`[tool.importlinter]`) hold: the pipeline reaches
`vista_tui` only through mapdata and core, mapdata and core stay headless, the layers
cli -> tui -> core -> mapdata point one way, and no modules import each other in a cycle.
The contracts count every import, including those inside functions and under TYPE_CHECKING:
a deferred import changes when a dependency loads, not that it exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT_CONTRACTS = {
    "pipeline-uses-mapdata-and-core",
    "headless-core",
    "layers",
    "only-cli-imports-tui",
    "nothing-imports-cli",
    "no-cycles",
}
"""The contract ids pyproject.toml must declare: dropping one there fails a test here."""

LINT_IMPORTS = "import sys\nfrom importlinter.cli import lint_imports_command\nsys.exit(lint_imports_command())"

HEAVY = ["torch", "sae_lens", "umap", "hdbscan", "diffusers", "transformers", "pipeline", "numba", "sklearn"]

PROBE = """
import importlib, pkgutil, sys
import vista_tui
for module in pkgutil.walk_packages(vista_tui.__path__, "vista_tui."):
    importlib.import_module(module.name)
print(",".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_importing_all_of_vista_tui_loads_no_heavy_module() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = set(result.stdout.strip().split(","))
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert "vista_tui" in loaded


def test_vista_help_does_not_load_heavy_modules() -> None:
    probe = (
        "import sys\nfrom vista_tui.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(','.join(sorted({n.split('.')[0] for n in sys.modules})), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert set(result.stderr.strip().split(",")).isdisjoint(HEAVY)
    assert "build" in result.stdout and "demo" in result.stdout


def test_opening_a_map_does_not_import_pandas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """pyarrow's to_numpy pulls in pandas (~300 ms, ~40 MB) when it is installed; the TUI never needs it."""
    from tests.helpers.synthetic_map import build_synthetic_map

    path = build_synthetic_map(tmp_path / "m")
    probe = (
        "import sys\nfrom vista_tui.core.model import MapModel\n"
        f"m = MapModel.open({str(path)!r})\n"
        "m.contexts.load(m.members_by_activation(m.root.node_id)[:50])\n"
        "print(len(m.activations), m.layout.shape, 'pandas' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "False", result.stdout


def test_pyproject_declares_every_import_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert config["root_packages"] == ["vista_tui", "pipeline"]
    assert {contract["id"] for contract in config["contracts"]} == IMPORT_CONTRACTS


@pytest.mark.parametrize("contract", sorted(IMPORT_CONTRACTS))
def test_import_contract_is_kept(contract: str) -> None:
    """import-linter, run on this checkout (cwd first on sys.path), keeps the contract; its report is the message."""
    # Wide columns: the report names modules and import lines, which rich would otherwise wrap.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", "--contract", contract, "pyproject.toml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout, result.stdout


def _import_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Every import that is part of a cycle, as the shortest cycle through it (each cycle once)."""
    cycles: set[tuple[str, ...]] = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycle = (importer, *back[:-1])
                first = cycle.index(min(cycle))  # the same cycle found from another of its imports
                cycles.add(cycle[first:] + cycle[:first])
    return sorted(cycles)


def test_no_module_imports_itself_through_others() -> None:
    """No cycle of modules, named module by module: the sibling contract names only the packages, and does not
    see a package's `__init__` importing a module that imports the package back."""
    graph = grimp.build_graph("vista_tui", "pipeline", cache_dir=None)
    cycles = _import_cycles(graph)
    assert not cycles, "\n".join(" -> ".join((*cycle, cycle[0])) for cycle in cycles)


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in tests/helpers (or in fixtures), never in a test module that others import."""
    graph = grimp.build_graph("tests", cache_dir=None)
    imports = sorted(
        f"{importer} -> {imported}"
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.rsplit(".", 1)[-1].startswith("test_")
    )
    assert not imports, imports
