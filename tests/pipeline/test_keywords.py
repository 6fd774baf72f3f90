"""Keywords by class-based TF-IDF: siblings are told apart, stop words never show, output is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from pipeline import keywords
from pipeline.keywords import KeywordsConfig, context_words, visual_prompt
from vista_tui.mapdata import ClusterNode, NodeLabels, node_id_for

MUSCLE = [
    "The athlete trained her biceps and the muscles grew strong with every session",
    "Stretch the muscle slowly before lifting, the biceps need a long warm up session",
    "Sore muscles after the gym session mean the biceps worked hard and grew strong",
    "A torn muscle in the upper arm near the biceps heals with rest and a strong diet",
    "Protein helps muscles recover, so the biceps grow after each training session",
    "He flexed his biceps and every muscle in his arm looked strong in the mirror",
]
MUSTARD = [
    "She spread yellow mustard on the bread before the session and it tasted strong",
    "The old mustang galloped across the plain, a strong horse with a wild mane",
    "Dijon mustard and honey make a strong sauce for the roast during the session",
    "A red mustang car parked outside, its engine strong and loud after the session",
    "Grainy mustard seeds were crushed into paste, the mustard smelled strong",
    "Wild mustangs roam the prairie in herds, strong horses that never settle",
]


def _pieces(sentence: str) -> list[str]:
    """Display tokens as the harvest makes them: words with their leading space, long words in two pieces."""
    pieces: list[str] = []
    for i, word in enumerate(sentence.split(" ")):
        lead = "" if i == 0 else " "
        if len(word) > 6:  # a sub-word split, as WordPiece would make
            pieces += [lead + word[:4], word[4:]]
        else:
            pieces.append(lead + word)
    return pieces


def _focus_on(pieces: list[str], stems: tuple[str, ...]) -> int:
    for i, piece in enumerate(pieces):
        if piece.strip().lower().startswith(stems):
            return i
    raise AssertionError(f"no piece starts with {stems}")


def _node(members: list[int], parent: str | None, depth: int, kind: str = "cluster") -> ClusterNode:
    return ClusterNode(
        node_id=node_id_for([str(m) for m in members], "noise" if kind == "noise" else "cluster"),
        parent_id=parent,
        depth=depth,
        kind=kind,  # type: ignore[arg-type]
        members=np.asarray(sorted(members), dtype=np.int32),
        centroid=(0.0, 0.0),
        bbox=(0.0, 0.0, 1.0, 1.0),
        mean_activation=1.0,
        max_activation=2.0,
        labels=NodeLabels(llm_label="kept"),
    )


@pytest.fixture
def corpus() -> tuple[list[list[str]], np.ndarray, list[ClusterNode]]:
    tokens = [_pieces(s) for s in MUSCLE] + [_pieces(s) for s in MUSTARD]
    focus = np.array(
        [_focus_on(t, ("bic", "mus")) for t in tokens[: len(MUSCLE)]]
        + [_focus_on(t, ("must",)) for t in tokens[len(MUSCLE) :]]
    )
    muscle_rows = list(range(len(MUSCLE)))
    mustard_rows = list(range(len(MUSCLE), len(tokens)))
    root = _node(muscle_rows + mustard_rows, None, 0, "root")
    nodes = [root, _node(muscle_rows, root.node_id, 1), _node(mustard_rows, root.node_id, 1)]
    return tokens, focus, nodes


def test_siblings_get_the_words_that_tell_them_apart(corpus: tuple) -> None:
    tokens, focus, nodes = corpus
    root, muscle, mustard = keywords.run(KeywordsConfig(n_keywords=4), nodes, tokens, focus)

    assert set(muscle.labels.keywords[:2]) <= {"biceps", "muscles", "muscle"}
    assert {"mustard", "mustang"} & set(mustard.labels.keywords[:2])
    assert not {"mustard", "mustang", "mustangs"} & set(muscle.labels.keywords)
    assert not {"biceps", "muscles", "muscle"} & set(mustard.labels.keywords)
    # "strong" is in every context of both siblings: as frequent as the focus words, but no
    # help in telling the siblings apart, so it ranks below the words that are.
    _, wide_muscle, wide_mustard = keywords.run(KeywordsConfig(n_keywords=50, min_df=1), nodes, tokens, focus)
    for child in (wide_muscle, wide_mustard):
        assert "strong" not in child.labels.keywords[:3]
    assert root.labels.keywords  # the root is scored against its own contexts


def test_stop_words_and_non_words_never_appear(corpus: tuple) -> None:
    tokens, focus, nodes = corpus
    for node in keywords.run(KeywordsConfig(n_keywords=50, min_df=1), nodes, tokens, focus):
        for word in node.labels.keywords:
            assert word not in ENGLISH_STOP_WORDS
            assert word == word.lower()
            assert any(ch.isalpha() for ch in word) and len(word) >= 2


def test_deterministic_and_independent_of_node_order(corpus: tuple) -> None:
    tokens, focus, nodes = corpus
    cfg = KeywordsConfig()
    first = keywords.run(cfg, nodes, tokens, focus)
    again = keywords.run(cfg, nodes, tokens, focus)
    shuffled = keywords.run(cfg, [nodes[2], nodes[0], nodes[1]], tokens, focus)
    assert [n.labels.keywords for n in first] == [n.labels.keywords for n in again]
    by_id = {n.node_id: n.labels.keywords for n in shuffled}
    assert all(by_id[n.node_id] == n.labels.keywords for n in first)


def test_input_nodes_untouched_and_other_labels_kept(corpus: tuple) -> None:
    tokens, focus, nodes = corpus
    out = keywords.run(KeywordsConfig(), nodes, tokens, focus)
    assert all(n.labels.keywords == [] and n.labels.visual_prompt == "" for n in nodes)
    assert all(n.labels.llm_label == "kept" for n in out)
    assert [n.node_id for n in out] == [n.node_id for n in nodes]
    assert out[1].labels.visual_prompt.startswith("an illustration of ")
    assert out[1].labels.keywords[0] in out[1].labels.visual_prompt


def test_uncovered_parent_members_count_as_a_sibling(corpus: tuple) -> None:
    """An only child is still compared with what its parent holds beyond it (noise not emitted as a node)."""
    tokens, focus, nodes = corpus
    root, muscle, _ = nodes
    (_, only_child) = keywords.run(KeywordsConfig(n_keywords=3), [root, muscle], tokens, focus)
    assert "strong" not in only_child.labels.keywords
    assert set(only_child.labels.keywords[:2]) <= {"biceps", "muscles", "muscle"}


def test_focus_word_weight_breaks_a_tie() -> None:
    # "apple" and "pear" are in every context equally often; the latent fired on "pear".
    windows = [["An", " apple", " and", " a", " pear"], ["A", " pear", " or", " an", " apple"]]
    focus = np.array([4, 1])
    root = _node([0, 1], None, 0, "root")
    (plain,) = keywords.run(KeywordsConfig(focus_weight=1.0), [root], windows, focus)
    (weighted,) = keywords.run(KeywordsConfig(focus_weight=3.0), [root], windows, focus)
    assert plain.labels.keywords == ["apple", "pear"]  # a tie: alphabetical
    assert weighted.labels.keywords == ["pear", "apple"]


def test_min_df_keeps_one_long_context_from_naming_a_cluster() -> None:
    windows = [[" zebra"] * 10 + [" lion"], [" lion", " grass"], [" lion", " grass"]]
    root = _node([0, 1, 2], None, 0, "root")
    (node,) = keywords.run(KeywordsConfig(min_df=2), [root], windows, np.array([0, 0, 0]))
    assert "zebra" not in node.labels.keywords
    (loose,) = keywords.run(KeywordsConfig(min_df=1), [root], windows, np.array([0, 0, 0]))
    assert loose.labels.keywords[0] == "zebra"


def test_words_join_pieces_and_find_the_focus() -> None:
    words, at_focus = context_words(["Call", " os", ".", "path", ".", "join", "(", "__init__", ")"], 5)
    assert words == ["call", "os", "path", "join", "init"]
    assert at_focus == {3}
    wordpiece, focus_words = context_words(["the", "mus", "##cles", "grew", "."], 2)
    assert wordpiece == ["the", "muscles", "grew"]
    assert focus_words == {1}


def test_visual_prompt_template() -> None:
    cfg = KeywordsConfig(n_prompt_keywords=3)
    assert visual_prompt(cfg, ["muscles", "biceps", "gym", "arm"]) == "an illustration of muscles, biceps, and gym"
    assert visual_prompt(cfg, ["file_path", "os"]) == "an illustration of file path and os"
    assert visual_prompt(cfg, []) == ""
    assert visual_prompt(KeywordsConfig(prompt_template="a photo of {keywords}"), ["cat"]) == "a photo of cat"


def test_empty_and_out_of_range_members() -> None:
    root = _node([], None, 0, "root")
    (node,) = keywords.run(KeywordsConfig(), [root], [], np.zeros(0, dtype=int))
    assert node.labels.keywords == [] and node.labels.visual_prompt == ""
    with pytest.raises(ValueError, match="outside"):
        keywords.run(KeywordsConfig(), [_node([0, 5], None, 0, "root")], [[" a"]], np.array([0]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_keywords", 0),
        ("focus_weight", -1.0),
        ("focus_weight", float("nan")),
        ("min_df", 0),
        ("n_prompt_keywords", 9),
        ("prompt_template", "no placeholder"),
        ("prompt_template", "{keywords} and {other}"),
        ("extra_stop_words", "word"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        KeywordsConfig(**{field: value})
