"""A torn map is refused the same way by every command that reads one: the same line, exit 2.

A command that happens not to read the torn file (`summary` never reads the codes) must not
report success on it: every command checks the whole map before it reads a table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import assert_one_line_error, vista
from tests.helpers.isolation import no_user_config  # noqa: F401  (autouse: no user config leaks in)
from tests.helpers.small_map import small_map

COMMANDS = {
    "summary": ["summary", "m1"],
    "export": ["export", "m1"],
    "triage-status": ["triage-status", "m1"],
    "annotate": ["annotate", "m1", "root", "--status", "junk"],
    "render": ["render", "m1"],
    "import-explanations": ["import-explanations", "m1", "EXPLANATIONS"],
    "explore": ["explore", "m1"],
}
"""Every command that reads a map ("EXPLANATIONS": a good explanations file, so only the map is wrong)."""


@pytest.mark.parametrize("torn", ["contexts.parquet", "codes.npz"])
def test_every_command_refuses_a_torn_map_with_the_same_line(tmp_path: Path, torn: str) -> None:
    map_dir = tmp_path / "store" / "maps" / "m1"
    small_map(map_dir)
    explanations = tmp_path / "explanations.json"
    explanations.write_text(json.dumps([{"index": 7, "description": "muscles"}]))
    path = map_dir / torn
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    lines = {}
    for command, args in COMMANDS.items():
        done = vista(
            "--cache", str(tmp_path / "store"), *[str(explanations) if a == "EXPLANATIONS" else a for a in args]
        )
        assert done.returncode == 2, (command, done.stderr)
        lines[command] = assert_one_line_error(done, torn, "truncated", "vista build")
    assert len(set(lines.values())) == 1, lines
    assert sorted(path.name for path in map_dir.iterdir()) == sorted(  # nothing was written into the torn map
        ["manifest.json", "contexts.parquet", "codes.npz", "tree.parquet", "fidelity.json", "opening.npz"]
    )
