"""`vista_tui.mapdata` gives each name from its own module, and loads that module only when asked."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import vista_tui.mapdata as mapdata

INIT = Path(mapdata.__file__)


def type_checking_imports() -> dict[str, list[str]]:
    """Module → names, as the package's `if TYPE_CHECKING:` block imports them."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If))
    found: dict[str, list[str]] = {}
    for statement in block.body:
        assert isinstance(statement, ast.ImportFrom) and statement.module is not None
        found.setdefault(statement.module.removeprefix("vista_tui.mapdata."), []).extend(
            alias.name for alias in statement.names
        )
    return found


def test_the_names_and_the_type_checkers_imports_agree() -> None:
    assert type_checking_imports() == {module: list(names) for module, names in mapdata._NAMES.items()}
    for module, names in mapdata._NAMES.items():
        namespace = importlib.import_module(f"vista_tui.mapdata.{module}")
        for name in names:
            assert getattr(mapdata, name) is getattr(namespace, name)
    listed = [name for names in mapdata._NAMES.values() for name in names]
    assert len(set(listed)) == len(listed)  # no name given by two modules


def test_a_name_loads_its_module_only() -> None:
    code = (
        "import json, sys\n"
        "from vista_tui.mapdata import read_match_table, MapReader\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('vista_tui.mapdata.')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert {"vista_tui.mapdata.matches", "vista_tui.mapdata.reader"} <= loaded
    # Neither imports the side files' modules it does not use (they cost the explorer's first frame).
    assert not loaded & {f"vista_tui.mapdata.{m}" for m in ("label_cache", "score_cache", "stats", "negatives")}
