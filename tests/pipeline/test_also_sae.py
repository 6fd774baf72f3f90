"""`build --also-sae`: a real build (MiniLM, small sae-lens SAEs), children.json against a brute-force recount.

SAE B is planted: each latent of A split into four perturbed copies (`save_split_sae`), so A's
latent has children that fire. The recount runs MiniLM on every chunk alone, finds each map row's
focus token by its context id, encodes it with both SAEs and compares (floats with a tolerance:
the recount's batching is not the harvest's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.build import BuildConfig, build
from pipeline.harvest import ChildrenConfig, HarvestConfig
from pipeline.steps import params_of, step_id
from tests.helpers.build_inputs import docstring_corpus, save_sae, save_split_sae
from vista_tui.mapdata import MapReader, Store
from vista_tui.mapdata.children import CHILDREN_FILE, MapChildren, read_children

pytestmark = pytest.mark.slow

LATENT = 1
K = 6
MAX_TOKENS = 8000
TOL = 2e-4


def no_report(step: str, description: str) -> Any:
    return lambda done, total=None, note="": None


def config(corpus: Path, sae: Path, children: ChildrenConfig | None) -> BuildConfig:
    return BuildConfig(
        harvest=HarvestConfig(
            model="minilm",
            hook="3",
            latents=(LATENT,),
            corpus=(str(corpus),),
            sae_path=str(sae),
            top_n=120,
            max_tokens=MAX_TOKENS,
            negatives=0,
            quantiles=0,
            children=children,
        )
    )


class Built:
    """The same map built without, with, and again without `--also-sae`."""

    def __init__(self, root: Path) -> None:
        self.sae_a = save_sae(root / "a", 384)
        self.sae_b = save_split_sae(root / "b", self.sae_a)
        self.corpus = docstring_corpus(root / "docs.jsonl", 150)
        self.store = Store(root / "store")
        self.children = ChildrenConfig(sae_path=str(self.sae_b), k=K)
        (self.plain,) = build(config(self.corpus, self.sae_a, None), self.store, no_report)
        self.plain_tree = [(node.node_id, node.members.tolist()) for node in MapReader(self.plain.path).tree]
        self.plain_xy = MapReader(self.plain.path).contexts_table(["x", "y"]).to_pydict()
        (self.with_b,) = build(config(self.corpus, self.sae_a, self.children), self.store, no_report)
        self.reader = MapReader(self.with_b.path)
        found = read_children(self.with_b.path)
        assert found is not None
        self.found: MapChildren = found
        (self.again,) = build(config(self.corpus, self.sae_a, None), self.store, no_report)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, umap_warm: None) -> Built:
    return Built(tmp_path_factory.mktemp("also_sae"))


def focus_hidden(corpus: Path, context_ids: set[str]) -> dict[str, Any]:
    """Each wanted context's focus token's hidden state at block 3, every chunk run through MiniLM alone."""
    import torch

    from pipeline.corpus import iter_documents
    from pipeline.harvest.batches import iter_chunks
    from pipeline.models import HookedForward, load_model, resolve_hook
    from vista_tui.mapdata import context_id_for

    loaded = load_model("minilm", "cpu")
    forward = HookedForward(loaded.model, *resolve_hook(loaded.model, "3"))
    found: dict[str, Any] = {}
    with torch.inference_mode():
        for chunk in iter_chunks(iter_documents([str(corpus)]), loaded.tokenizer, 128, MAX_TOKENS, {}):
            ids = [
                context_id_for(chunk.document.source, chunk.document.doc_id, chunk.first_position + i)
                for i in range(int(chunk.real.sum()))
            ]
            if not context_ids.intersection(ids):
                continue
            input_ids = torch.from_numpy(chunk.input_ids)[None]
            hidden = forward(input_ids, torch.ones_like(input_ids))[0][torch.from_numpy(chunk.real)]
            found.update({cid: hidden[i] for i, cid in enumerate(ids) if cid in context_ids})
    return found


def brute_neighbours(sae_a: Any, sae_b: Any) -> dict[int, float]:
    """A's latent's K nearest decoder directions in B by cosine, in float64 numpy."""
    a = sae_a.W_dec.detach().double().numpy()[LATENT]
    b = sae_b.W_dec.detach().double().numpy()
    cosines = b @ a / (np.linalg.norm(b, axis=1) * np.linalg.norm(a))
    best = np.argsort(-cosines)[:K]
    return {int(j): float(cosines[j]) for j in best}


def test_children_match_a_brute_force_recount(built: Built) -> None:
    import torch
    from sae_lens import SAE

    sae_a = SAE.load_from_disk(built.sae_a, device="cpu")
    sae_b = SAE.load_from_disk(built.sae_b, device="cpu")
    neighbours = brute_neighbours(sae_a, sae_b)
    found = built.found
    assert found.sae == str(built.sae_b) and found.d_sae == 4 * int(sae_a.cfg.d_sae) and found.latent == LATENT
    assert {j for j, _ in found.neighbours} == set(neighbours)
    for j, cosine in found.neighbours:
        assert cosine == pytest.approx(neighbours[j], abs=1e-5)
    assert [c for _, c in found.neighbours] == sorted((c for _, c in found.neighbours), reverse=True)
    # The split copies of LATENT are its nearest directions, and they do fire: there is something to count.
    assert {LATENT * 4 + i for i in range(4)} <= set(neighbours)

    table = built.reader.contexts_table(["context_id", "activation"])
    context_ids = table.column("context_id").to_pylist()
    activations = table.column("activation").to_numpy()
    assert len(found.contexts) == len(context_ids)
    hidden = focus_hidden(built.corpus, set(context_ids))
    assert set(hidden) == set(context_ids)
    wanted = torch.as_tensor(sorted(neighbours))
    n_firing = 0
    with torch.inference_mode():
        for row, cid in enumerate(context_ids):
            x = hidden[cid][None]
            assert float(sae_a.encode(x)[0, LATENT]) == pytest.approx(float(activations[row]), abs=TOL)  # same token
            b_acts = sae_b.encode(x)[0, wanted].numpy()
            expected = {int(j): float(a) for j, a in zip(wanted.tolist(), b_acts, strict=True) if a > TOL}
            got = dict(found.contexts[row])
            assert {j for j, a in got.items() if a > TOL} == set(expected), row
            for j, activation in expected.items():
                assert got[j] == pytest.approx(activation, abs=TOL)
            assert all(j in neighbours and a > 0 for j, a in got.items())
            n_firing += bool(got)
    assert n_firing > len(context_ids) // 2


def test_node_shares_sum_as_stated(built: Built) -> None:
    found, tree = built.found, built.reader.tree
    assert set(found.nodes) == {node.node_id for node in tree}  # every node, noise included
    for node in tree:
        shares = found.nodes[node.node_id]
        members = node.members.tolist()
        assert shares.n == len(members)
        assert sum(c.dominant_share for c in shares.children) + shares.none_share == pytest.approx(1.0)
        for child in shares.children:
            firing = [
                dict(found.contexts[row])[child.latent] for row in members if child.latent in dict(found.contexts[row])
            ]
            assert child.share == pytest.approx(len(firing) / len(members))
            assert child.mean_activation == pytest.approx(float(np.mean(firing)))
            dominant = sum(found.dominant(row) == child.latent for row in members)
            assert child.dominant_share == pytest.approx(dominant / len(members))
    root = found.nodes[tree[0].node_id]
    assert root.dominant is not None and root.dominant.latent in {LATENT * 4 + i for i in range(4)}


def test_also_sae_changes_no_map_step(built: Built) -> None:
    """The map with --also-sae reuses the layout, clusters and keywords of the map without it: same tree, same
    points; only the children step is new. Built without it again, children.json goes."""
    assert built.with_b.map_id == built.plain.map_id
    assert built.with_b.computed_steps == ("children",)
    assert [(node.node_id, node.members.tolist()) for node in built.reader.tree] == built.plain_tree
    assert built.reader.contexts_table(["x", "y"]).to_pydict() == built.plain_xy
    steps = built.reader.manifest.steps
    assert steps["children"].params == {"sae": str(built.sae_b), "k": K}
    assert steps["children"].upstream == steps["harvest"].step_id
    assert "children" not in steps["harvest"].params
    assert not (built.again.path / CHILDREN_FILE).exists()
    assert read_children(built.again.path) is None
    assert "children" not in MapReader(built.again.path).manifest.steps


def test_harvest_cache_key_changes_only_with_also_sae(tmp_path: Path) -> None:
    plain = HarvestConfig(model="minilm", hook="3", latents=(1,), corpus=("x.txt",), sae_path=str(tmp_path))
    assert "children" not in params_of(plain)
    with_b = HarvestConfig(
        model="minilm", hook="3", latents=(1,), corpus=("x.txt",), sae_path=str(tmp_path),
        children=ChildrenConfig(sae_path="b"),
    )  # fmt: skip
    assert params_of(with_b)["children"] == {"sae_release": None, "sae_id": None, "sae_path": "b", "k": 8}
    ids = {step_id("harvest", 4, params_of(cfg), None) for cfg in (plain, with_b)}
    assert len(ids) == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "not both and not neither"),
        ({"sae_path": "b", "sae_id": "x"}, "also_sae_release and also_sae_id go together"),
        ({"sae_path": "b", "k": 0}, "children k must be a positive integer"),
    ],
)
def test_children_config_says_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChildrenConfig(**fields)
