"""`annotate`, `triage-status`, `export`, `import-explanations` as a script runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.cli import assert_one_line_error, vista, vista_writing_to
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.cli.explanations import mismatch
from vista_tui.cli.export import EXPORT_COLUMNS, LIST_COLUMNS, SCORE_COLUMNS
from vista_tui.core.titles import node_title
from vista_tui.core.triage_config import DEFAULT_STATUSES
from vista_tui.mapdata import MapReader, Provenance


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VISTA_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text('[triage]\nauthor = "cli-tester"\n')
    build_synthetic_map(tmp_path / "store" / "maps" / "m", n=120, seed=1)
    return tmp_path / "store"


def test_annotate_then_triage_status(store_dir: Path) -> None:
    reader = MapReader(store_dir / "maps" / "m")
    cluster = reader.tree[1].node_id
    done = vista("--cache", str(store_dir), "annotate", "m", "root", "--status", "junk", "--tag", "a", "--note", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"saved {reader.root.node_id} status=junk tags=a")
    done = vista("--cache", str(store_dir), "annotate", "m", cluster[:6], "--status", "interpretable", "--tag", "b")
    assert done.returncode == 0, done.stderr
    done = vista("--cache", str(store_dir), "annotate", "m", cluster[:6], "--untag", "b")
    assert "tags=-" in done.stdout
    status = vista("--cache", str(store_dir), "triage-status", "m", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    total = len(reader.tree)
    assert report["total"] == total and report["reviewed"] == 2 and report["orphans"] == 0
    assert report["counts"]["junk"] == 1 and report["counts"]["unreviewed"] == total - 2
    table = vista("--cache", str(store_dir), "triage-status", "m")
    assert f"2 / {total} nodes reviewed" in table.stdout and "orphaned annotations: 0" in table.stdout


def _exported(path: Path, fmt: str) -> list[dict[str, object]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if fmt == "csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        out = []
        for row in rows:
            parsed: dict[str, object] = dict(row)
            for key in LIST_COLUMNS:
                parsed[key] = json.loads(row[key])
            for key in ("depth", "size"):
                parsed[key] = int(row[key]) if row[key] else None
            for key in SCORE_COLUMNS:
                parsed[key] = float(row[key]) if row[key] else None
            parsed["parent_id"] = row["parent_id"] or None
            out.append(parsed)
        return out
    return pq.read_table(path).to_pylist()


def test_export_round_trips_in_every_format_with_orphans(store_dir: Path, tmp_path: Path) -> None:
    map_dir = store_dir / "maps" / "m"
    reader = MapReader(map_dir)
    leaf = next(n for n in reader.tree if n.depth == 2).node_id
    assert (
        vista(
            "--cache", str(store_dir), "annotate", "m", leaf, "--status", "split", "--note", 'a "quoted", note'
        ).returncode
        == 0
    )
    build_synthetic_map(map_dir, n=120, seed=7)  # reshuffled clusters: the leaf's annotation has no node now
    exports = {}
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"export.{fmt}"
        done = vista("--cache", str(store_dir), "export", "m", "--format", fmt, "--output", str(out))
        assert done.returncode == 0, done.stderr
        exports[fmt] = _exported(out, fmt)
    assert exports["jsonl"] == exports["csv"] == exports["parquet"]
    rows = exports["jsonl"]
    assert all(tuple(row) == EXPORT_COLUMNS for row in rows)
    assert len(rows) == len(MapReader(map_dir).tree) + 1
    orphan = rows[-1]
    assert orphan["kind"] == "orphan" and orphan["node_id"] == leaf and orphan["status"] == "split"
    assert orphan["note"] == 'a "quoted", note' and orphan["author"] == "cli-tester"
    assert orphan["depth"] is None and orphan["size"] == len(orphan["member_context_ids"]) > 0  # type: ignore[arg-type]
    status = json.loads(vista("--cache", str(store_dir), "triage-status", "m", "--json").stdout)
    assert status["orphans"] == 1
    to_stdout = vista("--cache", str(store_dir), "export", "m", "--format", "jsonl")
    assert [json.loads(line) for line in to_stdout.stdout.splitlines()] == rows


@pytest.mark.parametrize(
    ("model_id", "layer", "named"),
    [
        ("gemma-2-2b", "20-gemmascope-res-16k", "model gemma-2-2b"),
        ("org/synthetic-model", "20-res", "layer 20-res"),
        ("synthetic-model", "3-res-16k", "an SAE of width 3-res-16k (the map's has 512 latents)"),
    ],
)
def test_import_explanations_of_another_model_needs_force(
    store_dir: Path, tmp_path: Path, model_id: str, layer: str, named: str
) -> None:
    export = tmp_path / "other.json"
    export.write_text(json.dumps([{"modelId": model_id, "layer": layer, "index": "42", "description": "x"}]))
    refused = vista("--cache", str(store_dir), "import-explanations", "m", str(export))
    line = assert_one_line_error(refused, named, "synthetic-model", "layer.3", "--force")
    assert refused.returncode == 2 and line.startswith(f"error: {export} explains {named}, but map m is of")
    assert not (store_dir / "maps" / "m" / "explanations.json").exists()
    forced = vista("--cache", str(store_dir), "import-explanations", "m", str(export), "--force")
    assert forced.returncode == 0, forced.stderr
    stored = json.loads((store_dir / "maps" / "m" / "explanations.json").read_text())
    assert [e["model_id"] for e in stored["explanations"]] == [model_id]


@pytest.mark.parametrize(
    ("model", "hook", "model_id", "layer"),
    [
        ("google/gemma-2-2b", "model.layers.20", "gemma-2-2b", "20-gemmascope-res-16k"),
        ("/models/Gemma-2-2B/", "blocks.20.hook_resid_post", "gemma-2-2b", 20),
        ("gpt2", "ln_f", "gpt2", "8-res-jb"),  # a hook without a layer number: only the model is compared
    ],
)
def test_the_same_model_and_layer_match_however_named(model: str, hook: str, model_id: str, layer: object) -> None:
    provenance = Provenance(model=model, hook=hook, sae="s", latent=1, corpus="c", n_contexts=1, d_sae=16384)
    assert mismatch({"model_id": model_id, "layer": layer}, provenance) is None


def test_import_explanations_json_and_jsonl(store_dir: Path, tmp_path: Path) -> None:
    map_dir = store_dir / "maps" / "m"  # latent 42
    items = [  # the map's model and layer (synthetic-model, hook layer.3), as Neuronpedia would name them
        {
            "modelId": "synthetic-model",
            "layer": "3-synthetic-sae",
            "index": "42",
            "description": "mus- words",
            "explanationModelName": "gpt-4o-mini",
            "score": 0.61,
        },
        {"modelId": "gemma-2-2b", "layer": "20-gemmascope-res-16k", "index": "43", "description": "not ours"},
    ]
    listing = tmp_path / "export.json"
    listing.write_text(json.dumps(items))
    done = vista("--cache", str(store_dir), "import-explanations", "m", str(listing))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported 1 explanation for latent 42 into {map_dir / 'explanations.json'}"
    lines = tmp_path / "export.jsonl"
    lines.write_text(
        json.dumps({"index": 42, "explanation": "muscles and music"}) + "\n\n" + json.dumps(items[0]) + "\n"
    )
    done = vista("--cache", str(store_dir), "import-explanations", "m", str(lines))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 1 explanation ") and "(1 already there)" in done.stdout
    stored = json.loads((map_dir / "explanations.json").read_text())
    assert stored["latent"] == 42
    assert [e["description"] for e in stored["explanations"]] == ["mus- words", "muscles and music"]
    assert (
        stored["explanations"][0]["score"] == 0.61 and stored["explanations"][0]["explanation_model"] == "gpt-4o-mini"
    )
    no_index = tmp_path / "plain.json"
    no_index.write_text(json.dumps([{"description": "anything"}]))
    assert vista("--cache", str(store_dir), "import-explanations", "m", str(no_index)).returncode == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["annotate", "m", "zzzz", "--status", "junk"], "has no node 'zzzz'"),
        (["annotate", "m", "root", "--status", "great"], "unknown status 'great'"),
        (["annotate", "nomap", "root", "--status", "junk"], "nomap"),
        (["annotate", "m", "root", "--tag", " "], "tag cannot be empty"),
        (["import-explanations", "m", "missing.json"], "cannot read"),
        (["import-explanations", "m", "BAD"], "neither JSON nor JSON lines"),
        (["import-explanations", "m", "OTHER"], "no explanation in"),
        (["import-explanations", "m", "EMPTY"], "has no 'description' or 'explanation'"),
        (["triage-status", "m", "--config", "BADCONFIG"], "not valid TOML"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_2(store_dir: Path, tmp_path: Path, args: list[str], words: str) -> None:
    files = {
        "BAD": "{not json\nat all",
        "OTHER": json.dumps([{"index": 7, "description": "x"}]),
        "EMPTY": json.dumps([{"index": 42, "description": ""}]),
        "BADCONFIG": "[triage\n",
    }
    resolved = []
    for arg in args:
        if arg in files:
            (tmp_path / arg).write_text(files[arg])
            arg = str(tmp_path / arg)
        resolved.append(arg)
    done = vista("--cache", str(store_dir), *resolved)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr


def test_damaged_annotations_are_reported_not_replaced(store_dir: Path) -> None:
    database = store_dir / "maps" / "m" / "annotations.sqlite"
    database.write_bytes(b"\x00garbage" * 100)
    done = vista("--cache", str(store_dir), "annotate", "m", "root", "--status", "junk")
    assert done.returncode == 2 and "is damaged" in done.stderr and "Traceback" not in done.stderr
    assert database.read_bytes() == b"\x00garbage" * 100


def test_undo_reverts_the_nodes_latest_change_in_the_toasts_words(store_dir: Path) -> None:
    reader = MapReader(store_dir / "maps" / "m")
    cluster = next(node for node in reader.tree if node.kind == "cluster")
    cache = ("--cache", str(store_dir))
    assert vista(*cache, "annotate", "m", "root", "--status", "junk", "--tag", "a").returncode == 0
    assert vista(*cache, "annotate", "m", cluster.node_id, "--note", "later, elsewhere").returncode == 0

    # the root's latest change, although the cluster's note came after it
    done = vista(*cache, "annotate", "m", "root", "--undo")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "undid tags of latent 42: '[\"a\"]' → '[]'\n"
    done = vista(*cache, "annotate", "m", "root", "--undo")
    assert done.stdout == "undid status of latent 42: 'junk' → 'unreviewed'\n"
    shown = vista(*cache, "annotate", "m", "root").stdout
    assert shown.endswith('status=unreviewed tags=- note=""\n'), shown

    nothing = vista(*cache, "annotate", "m", "root", "--undo")
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1, nothing.stderr
    assert nothing.stderr.startswith("error: nothing to undo") and "Traceback" not in nothing.stderr
    assert "later, elsewhere" in vista(*cache, "annotate", "m", cluster.node_id[:8]).stdout

    # as with `u`, only your own changes: another author's note on the cluster is not yours to undo
    assert vista(*cache, "annotate", "m", cluster.node_id, "--undo", "--author", "someone-else").returncode == 2
    done = vista(*cache, "annotate", "m", cluster.node_id, "--undo")
    assert done.stdout == f"undid note of {node_title(cluster)}: 'later, elsewhere' → ∅\n"


@pytest.mark.parametrize("change", [["--status", "junk"], ["--tag", "a"], ["--untag", "a"], ["--note", "x"]])
def test_undo_goes_alone(store_dir: Path, change: list[str]) -> None:
    done = vista("--cache", str(store_dir), "annotate", "m", "root", "--undo", *change)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: --undo cannot be combined with --status, --tag, --untag or --note")
    assert not (store_dir / "maps" / "m" / "annotations.sqlite").exists()


def test_annotate_help_lists_the_statuses() -> None:
    shown = vista("annotate", "--help")
    assert shown.returncode == 0, shown.stderr
    status_help = shown.stdout.split("\n  --status", 1)[1].split("\n  --tag", 1)[0]
    assert all(status in " ".join(status_help.split()) for status in DEFAULT_STATUSES), shown.stdout
    assert "[triage] statuses" in shown.stdout  # and where a config replaces them


def test_export_help_describes_every_column_and_names_no_source_file() -> None:
    shown = vista("export", "--help")
    assert shown.returncode == 0, shown.stderr
    columns = shown.stdout.split("columns (export schema version", 1)[1]
    listed = [line.split()[0] for line in columns.splitlines()[1:] if line.startswith("  ")]
    assert tuple(listed) == EXPORT_COLUMNS
    assert ".py" not in shown.stdout


def test_parquet_export_goes_to_a_redirected_stdout_and_to_o(store_dir: Path, tmp_path: Path) -> None:
    cache = ("--cache", str(store_dir))
    assert vista(*cache, "annotate", "m", "root", "--status", "junk", "--note", "seen").returncode == 0
    written = tmp_path / "by-o.parquet"
    done = vista(*cache, "export", "m", "--format", "parquet", "-o", str(written))
    assert done.returncode == 0, done.stderr
    expected = pq.read_table(written).to_pylist()
    assert expected[0]["status"] == "junk" and expected[0]["note"] == "seen"

    redirected = tmp_path / "redirected.parquet"
    with redirected.open("wb") as handle:  # `vista export m --format parquet > redirected.parquet`
        done = vista_writing_to(handle, *cache, "export", "m", "--format", "parquet")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert pq.read_table(redirected).to_pylist() == expected

    piped = subprocess.run(  # `vista export m --format parquet | …`
        [sys.executable, "-m", "vista_tui.cli", *cache, "export", "m", "--format", "parquet"],
        capture_output=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert pq.read_table(io.BytesIO(piped.stdout)).to_pylist() == expected


def test_parquet_export_is_not_written_to_a_terminal(store_dir: Path) -> None:
    terminal, other_end = os.openpty()
    try:
        done = vista_writing_to(other_end, "--cache", str(store_dir), "export", "m", "--format", "parquet")
    finally:
        os.close(other_end)
        os.close(terminal)
    assert_one_line_error(done, "stdout is a terminal", "-o FILE")
    assert done.returncode == 2


def test_annotate_note_is_stored_without_trailing_newlines(store_dir: Path) -> None:
    cache = ("--cache", str(store_dir))
    done = vista(*cache, "annotate", "m", "root", "--note", "line one\nline two\n\n ")
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in vista(*cache, "export", "m").stdout.splitlines()]
    assert exported[0]["note"] == "line one\nline two"
