"""The map's side files: published explanations, latent agreement and the label cache."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from vista_tui.mapdata import (
    AGREEMENT_FILE,
    EXPLANATIONS_FILE,
    LABEL_CACHE_FILE,
    CachedLabel,
    LabelCacheWriter,
    LatentAgreement,
    MapCorruptError,
    PublishedExplanation,
    PublishedExplanations,
    cluster_agreement,
    published_descriptions,
    read_agreement,
    read_label_cache,
    read_published_explanations,
    write_agreement,
    write_published_explanations,
)


def test_explanations_round_trip_and_ignore_unknown_keys(tmp_path: Path) -> None:
    assert read_published_explanations(tmp_path) is None and published_descriptions(tmp_path) == []
    written = PublishedExplanations(
        latent=42,
        explanations=(
            PublishedExplanation("mus- wörds", model_id="gemma-2-2b", index="42", score=0.61, source="x.json"),
            PublishedExplanation("music", index=42),
        ),
    )
    path = write_published_explanations(tmp_path, written)
    assert path == tmp_path / EXPLANATIONS_FILE
    assert "wörds" in path.read_text(encoding="utf-8")  # written as text, not \\u escapes
    assert read_published_explanations(tmp_path) == written
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["future"] = 1
    raw["explanations"][0]["future"] = 2
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert read_published_explanations(tmp_path) == written
    assert published_descriptions(tmp_path) == ["mus- wörds", "music"]


def test_unreadable_explanations_raise_one_line_and_read_as_none_for_display(tmp_path: Path) -> None:
    (tmp_path / EXPLANATIONS_FILE).write_text("[1, 2", encoding="utf-8")
    with pytest.raises(MapCorruptError, match="is unreadable; move it aside") as caught:
        read_published_explanations(tmp_path)
    assert "\n" not in str(caught.value)
    assert published_descriptions(tmp_path) == []


def test_agreement_round_trip_writes_nan_as_null(tmp_path: Path) -> None:
    assert read_agreement(tmp_path) is None and cluster_agreement(tmp_path) == {}
    write_agreement(tmp_path, LatentAgreement({"a": 0.5, "b": math.nan}, ("music",), "s1", "minilm"))
    raw = json.loads((tmp_path / AGREEMENT_FILE).read_text(encoding="utf-8"))
    assert raw == {"step_id": "s1", "encoder": "minilm", "published": ["music"], "clusters": {"a": 0.5, "b": None}}
    read = read_agreement(tmp_path)
    assert read is not None and read.published == ("music",) and read.step_id == "s1"
    scores = cluster_agreement(tmp_path)
    assert scores["a"] == 0.5 and math.isnan(scores["b"])


def test_agreement_without_optional_keys_and_unreadable(tmp_path: Path) -> None:
    (tmp_path / AGREEMENT_FILE).write_text(json.dumps({"clusters": {"a": 0.25}, "new": True}), encoding="utf-8")
    assert cluster_agreement(tmp_path) == {"a": 0.25}
    (tmp_path / AGREEMENT_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(MapCorruptError, match=AGREEMENT_FILE):
        read_agreement(tmp_path)
    assert cluster_agreement(tmp_path) == {}


def test_label_cache_appends_and_skips_a_torn_line(tmp_path: Path) -> None:
    assert read_label_cache(tmp_path) == {}
    writer = LabelCacheWriter(tmp_path)
    first = CachedLabel("n1", "k1", "music", "e", "v", model="m", at="t")
    writer.append(first)
    path = tmp_path / LABEL_CACHE_FILE
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"node_id": "n2", "key": "k2", "lab')  # a kill mid-line
    second = CachedLabel("n3", "k3", "seed", "e", "v", model="m", at="t")
    writer.append(second)
    assert read_label_cache(tmp_path) == {"k1": first, "k3": second}
    assert path.read_text(encoding="utf-8").count("\n") == 3


def test_side_files_load_without_numpy_or_pyarrow() -> None:
    probe = (
        "import sys\nimport vista_tui.mapdata as m\n"
        "m.read_published_explanations, m.read_agreement, m.read_label_cache, m.LabelCacheWriter\n"
        "print('numpy' in sys.modules, 'pyarrow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
