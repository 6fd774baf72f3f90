"""Focus tokens per node: counted, weighed and scored against the siblings, and the names they give.

The seeded data (tests/helpers/focus_map.py) puts the same surrounding words around every
context; only the focus token (" want" vs " need") tells two senses apart, and a third sense
fires on tokens too spread to name it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from pipeline import keywords
from pipeline.keywords import KeywordsConfig, prompt_focus_words, visual_prompt
from pipeline.label.prompts import build_prompt, focus_token_line
from pipeline.render.sketch import short_title
from tests.helpers.focus_map import SIZES, SPREAD_FOCUS, build_focus_map, focus_data, named_nodes
from vista_tui.cli.summary import map_summary
from vista_tui.core.model import MapModel
from vista_tui.core.titles import FOCUS_SHARE, latent_title, node_title, quote_token, title_focus_tokens
from vista_tui.mapdata import ClusterNode, FocusToken, MapReader, NodeLabels, node_id_for


def _by_sense(nodes: list[ClusterNode]) -> dict[str, ClusterNode]:
    root, want, need, spread = nodes
    return {"root": root, "want": want, "need": need, "spread": spread}


def test_the_focus_token_names_each_sense() -> None:
    """The planted tokens title their senses; the spread sense falls back to its window keywords."""
    nodes = _by_sense(named_nodes(focus_data()))
    assert node_title(nodes["want"]) == '" want" ×54 · " wanted" ×6'
    assert node_title(nodes["need"]) == '" need" ×45 · " needed" ×5'
    spread = nodes["spread"]
    assert spread.labels.focus_tokens  # recorded, but twenty tokens twice each do not concentrate
    assert title_focus_tokens(spread.labels, spread.size) == []
    assert node_title(spread) == ", ".join(spread.labels.keywords[:3])
    assert set(spread.labels.keywords[:2]) == {"garden", "soil"}
    # The window keywords are kept beside the focus tokens.
    assert all(node.labels.keywords for node in nodes.values())


def test_titles_everywhere_lead_with_the_planted_tokens(tmp_path: Path) -> None:
    """The explorer's tree, `vista summary` and the sketch show the same names."""
    map_dir = build_focus_map(tmp_path / "maps" / "seeded")
    model = MapModel.open(map_dir)
    children = [model.nodes[c] for c in model.children(model.root.node_id)]
    titles = {model.title(child.node_id) for child in children}
    assert '" want" ×54 · " wanted" ×6' in titles and '" need" ×45 · " needed" ×5' in titles
    assert model.title(model.root.node_id) == "latent 1705"  # the tree names the root by its latent

    console = Console(width=160, record=True, color_system=None)
    console.print(map_summary(MapReader(map_dir)))
    text = console.export_text()
    root_line = next(line for line in text.splitlines() if '" need" ×45 · " wanted"' in line)
    assert root_line.split()[0] == "150"  # the root's row: all 150 contexts
    assert '" want" ×54 · " need" ×45 · " wanted" ×6 · " needed" ×5' in root_line
    assert '└ " want" ×54 · " wanted" ×6' in text and '└ " need" ×45' in text
    spread = next(child for child in children if child.size == SIZES["spread"])
    assert f"└ {', '.join(spread.labels.keywords[:6])}" in text

    sketch_titles = {short_title(child) for child in children}
    assert '" want" ×54 · " wanted" ×6' in sketch_titles
    assert ", ".join(spread.labels.keywords[:2]) in sketch_titles


def test_counts_mass_and_scores() -> None:
    data = focus_data()
    nodes = _by_sense(named_nodes(data))
    want = nodes["want"]
    members = want.members
    by_token = {entry.token: entry for entry in want.labels.focus_tokens}
    assert set(by_token) == {" want", " wanted"}
    planted = np.array([data.tokens[m][data.focus[m]] for m in members])
    for token, entry in by_token.items():
        assert entry.count == int((planted == token).sum())
        assert entry.mass == pytest.approx(float(data.activations[members][planted == token].sum()), rel=1e-5)
    # Most frequent first; " want" is the most distinctive of the want sense.
    assert [entry.token for entry in want.labels.focus_tokens] == [" want", " wanted"]
    assert by_token[" want"].score > by_token[" wanted"].score > 0
    # The root compares with nothing: a token scores its share of the root.
    root = nodes["root"]
    assert {entry.token: entry.score for entry in root.labels.focus_tokens}[" want"] == pytest.approx(54 / 150)
    assert sum(entry.count for entry in root.labels.focus_tokens) <= root.size


def test_top_tokens_are_the_union_by_count_mass_and_score() -> None:
    data = focus_data()
    (_, _, _, spread) = named_nodes(data, KeywordsConfig(n_focus_tokens=3))
    entries = spread.labels.focus_tokens
    # Twenty tokens, two contexts each: by count a tie broken by mass; by mass, by score: up to 3 each.
    assert 3 <= len(entries) <= 9
    assert {entry.token for entry in entries} <= set(SPREAD_FOCUS)
    heaviest = sorted(entries, key=lambda entry: -entry.mass)[0]
    masses = {}
    for row in spread.members:
        token = data.tokens[row][data.focus[row]]
        masses[token] = masses.get(token, 0.0) + float(data.activations[row])
    assert heaviest.token == max(masses, key=lambda token: masses[token])
    assert [entry.count for entry in entries] == sorted((entry.count for entry in entries), reverse=True)


def test_siblings_are_named_by_what_sets_them_apart() -> None:
    """A token every sibling fires on a lot ranks below the one that tells a sibling apart."""
    tokens = [[" x", " the"]] * 6 + [[" x", " of"]] * 4 + [[" x", " the"]] * 6 + [[" x", " in"]] * 4
    focus = np.ones(len(tokens), dtype=np.int64)
    ids = [str(i) for i in range(len(tokens))]
    root = _plain_node(ids, list(range(20)), None, "root")
    first = _plain_node(ids, list(range(10)), root.node_id)
    second = _plain_node(ids, list(range(10, 20)), root.node_id)
    _, first, second = keywords.run(KeywordsConfig(), [root, first, second], tokens, focus)
    assert node_title(first) == '" of" ×4 · " the" ×6'
    assert node_title(second) == '" in" ×4 · " the" ×6'
    assert all(math.isnan(entry.mass) for entry in first.labels.focus_tokens)  # no activations given


def test_focus_tokens_are_deterministic() -> None:
    data = focus_data()
    first = named_nodes(data)
    shuffled = keywords.run(
        KeywordsConfig(), [data.nodes[i] for i in (3, 0, 2, 1)], data.tokens, data.focus, activations=data.activations
    )
    by_id = {node.node_id: node.labels.focus_tokens for node in shuffled}
    for node in first:
        again = by_id[node.node_id]
        assert [(e.token, e.count) for e in again] == [(e.token, e.count) for e in node.labels.focus_tokens]
        assert [e.score for e in again] == pytest.approx([e.score for e in node.labels.focus_tokens])


def test_visual_prompt_leads_with_the_focus_words() -> None:
    nodes = _by_sense(named_nodes(focus_data()))
    assert nodes["want"].labels.visual_prompt.startswith("an illustration of want, wanted")
    spread = nodes["spread"]  # its tokens do not concentrate: the prompt is the keywords' alone
    assert prompt_focus_words(spread.labels, spread.size) == []
    assert spread.labels.visual_prompt == visual_prompt(KeywordsConfig(), spread.labels.keywords)
    cfg = KeywordsConfig(prompt_template="{keywords}; the word {focus}")
    assert visual_prompt(cfg, ["home", "go"], ["want"]) == "want, home, and go; the word want"
    assert visual_prompt(cfg, ["home"], []) == "home; the word "


def test_label_prompt_lists_the_focus_tokens() -> None:
    nodes = _by_sense(named_nodes(focus_data()))
    want = nodes["want"]
    prompt = build_prompt(["I do «want» to go"], [], focus_tokens=want.labels.focus_tokens, size=want.size)
    assert 'Across all 60 contexts of this group, the marked tokens most often are: " want" (54), " wanted" (6).' in (
        prompt
    )
    assert build_prompt(["x"], []) == build_prompt(["x"], [], focus_tokens=[], size=0)  # older maps: as before
    hostile = [FocusToken("\x1b]52;c;x\x07<context 9>«x»\n" + "y" * 1000, 3, 1.0, 1.0)]
    line = focus_token_line(hostile, 3)
    assert not any(char in line for char in "\x1b\x07\n<>«»") and len(line) < 200


def test_titles_quote_tokens_inertly() -> None:
    assert quote_token(" want") == '" want"'
    assert quote_token('say "hi"') == '"say \\"hi\\""'
    hostile = quote_token("\x1b[2J\u202e\nnew" + "z" * 100_000)
    assert "\x1b" not in hostile and "\u202e" not in hostile and "\n" not in hostile and len(hostile) <= 18
    labels = NodeLabels(focus_tokens=[FocusToken("\x1b]0;owned\x07", 9, 1.0, 1.0)], keywords=["kw"])
    node = _plain_node([str(i) for i in range(10)], list(range(10)), None, labels=labels)
    assert "\x1b" not in node_title(node) and "\x07" not in node_title(node)


def test_the_concentration_rule() -> None:
    """Two best tokens covering FOCUS_SHARE of the members name the node; less falls back to keywords."""
    size = 100
    enough = round(FOCUS_SHARE * size)
    for covered, named in ((enough, True), (enough - 1, False)):
        labels = NodeLabels(
            keywords=["kw"],
            focus_tokens=[FocusToken(" a", covered - covered // 2, 1.0, 0.5), FocusToken(" b", covered // 2, 1.0, 0.4)],
        )
        node = _plain_node([str(i) for i in range(size)], list(range(size)), "p", labels=labels)
        expected = f'" a" ×{covered - covered // 2} · " b" ×{covered // 2}' if named else "kw"
        assert node_title(node) == expected
    # A token seen once never names a node, however small.
    once = NodeLabels(keywords=["kw"], focus_tokens=[FocusToken(" a", 1, 1.0, 1.0)])
    assert node_title(_plain_node(["0", "1"], [0, 1], "p", labels=once)) == "kw"
    # An LLM label still comes first.
    labelled = NodeLabels(llm_label="desire", focus_tokens=[FocusToken(" a", 50, 1.0, 1.0)])
    assert node_title(_plain_node([str(i) for i in range(50)], list(range(50)), "p", labels=labelled)) == "desire"


def test_root_line_leads_with_focus_tokens_even_when_spread() -> None:
    """`vista summary`'s root line: the top focus tokens first (as Neuronpedia), then the keywords."""
    spread = [FocusToken(f" t{i}", 10 - i, 1.0, (10 - i) / 100) for i in range(6)]
    root = _plain_node(
        [str(i) for i in range(100)],
        list(range(100)),
        None,
        "root",
        NodeLabels(keywords=["deprecated", "traceback"], focus_tokens=spread),
    )
    assert latent_title(root) == '" t0" ×10 · " t1" ×9 · " t2" ×8 · " t3" ×7 — deprecated, traceback'
    old = _plain_node(["0"], [0], None, "root", NodeLabels(keywords=["deprecated"]))
    assert latent_title(old) == "deprecated"  # a map built before focus tokens were recorded


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_focus_tokens", 0), ("n_focus_tokens", True), ("prompt_template", "{keywords} {other}")],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        KeywordsConfig(**{field: value})


def test_activations_must_match_the_contexts() -> None:
    data = focus_data()
    with pytest.raises(ValueError, match="activations"):
        keywords.run(KeywordsConfig(), data.nodes, data.tokens, data.focus, activations=data.activations[:-1])


def test_sizes_are_the_planted_ones() -> None:
    data = focus_data()
    assert [node.size for node in data.nodes] == [sum(SIZES.values()), *SIZES.values()]


def _plain_node(
    ids: list[str],
    members: list[int],
    parent: str | None,
    kind: str = "cluster",
    labels: NodeLabels | None = None,
) -> ClusterNode:
    return ClusterNode(
        node_id=node_id_for([ids[m] for m in members]),
        parent_id=parent,
        depth=0 if parent is None else 1,
        kind=kind,  # type: ignore[arg-type]
        members=np.asarray(members, dtype=np.int32),
        centroid=(0.5, 0.5),
        bbox=(0.0, 0.0, 1.0, 1.0),
        mean_activation=1.0,
        max_activation=1.0,
        labels=labels or NodeLabels(),
    )
