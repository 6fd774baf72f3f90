"""The TUI side never loads the heavy stack: import-time and memory matter over SSH."""

from __future__ import annotations

import subprocess
import sys

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
