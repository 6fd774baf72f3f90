"""`<map>/stats.json`: the latent's statistics, written and read through vista_tui.mapdata, and shown by `vista summary`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.helpers.focus_map import build_focus_map
from vista_tui.cli.summary import map_summary, sparkline
from vista_tui.mapdata import (
    STATS_FILE,
    DecoderLogits,
    Histogram,
    LatentStats,
    MapCorruptError,
    MapReader,
    NodeStats,
    QuantileExample,
    QuantileExamples,
    TokenLogit,
    read_latent_stats,
    write_latent_stats,
)
from vista_tui.mapdata.stats import regrid


def sample(nodes: dict[str, NodeStats] | None = None) -> LatentStats:
    return LatentStats(
        latent=7,
        n_tokens_seen=1000,
        n_fired=25,
        max_activation=3.5,
        activations=Histogram(lo=0.0, hi=4.0, counts=(10, 5, 0, 0, 4, 3, 2, 1)),
        positions=(0, 12, 8, 5),
        nodes=nodes or {},
    )


def test_round_trip(tmp_path: Path) -> None:
    node = NodeStats(activations=Histogram(0.0, 4.0, (0, 0, 0, 0, 1, 1, 1, 1)), positions=(0, 2, 1, 1))
    stats = sample({"abc": node})
    path = write_latent_stats(tmp_path, stats)
    assert path == tmp_path / STATS_FILE
    back = read_latent_stats(tmp_path)
    assert back == stats
    assert back is not None and back.density == pytest.approx(0.025)
    assert back.activations.total == 25
    assert back.activations.edges()[:3] == [0.0, 0.5, 1.0]
    assert not list(tmp_path.glob("*.tmp*"))  # atomic: no leftovers


def test_quantiles_and_logits_round_trip(tmp_path: Path) -> None:
    example = QuantileExample(
        interval=1, activation=2.5, doc_id="os.path", tokens=("the", " want"), focus=1, token_activations=(0.0, 2.5)
    )
    quantiles = QuantileExamples(edges=(0.0, 1.75, 3.5), per_quantile=4, examples=(example,))
    logits = DecoderLogits(positive=(TokenLogit(" want", 765, 1.25),), negative=(TokenLogit("un", 403, -0.5),))
    stats = LatentStats(**{**vars(sample()), "quantiles": quantiles, "logits": logits})
    write_latent_stats(tmp_path, stats)
    back = read_latent_stats(tmp_path)
    assert back == stats
    assert back is not None and back.quantiles is not None
    assert back.quantiles.n_intervals == 2
    assert back.quantiles.interval(1) == [example] and back.quantiles.interval(0) == []
    raw = json.loads((tmp_path / STATS_FILE).read_text(encoding="utf-8"))
    assert raw["logits"]["positive"] == [[" want", 765, 1.25]]


def test_a_file_without_quantiles_or_logits_reads_none_for_them(tmp_path: Path) -> None:
    raw = sample().to_dict()
    for key in ("quantiles", "logits", "logits_note"):
        raw.pop(key)
    (tmp_path / STATS_FILE).write_text(json.dumps(raw), encoding="utf-8")
    back = read_latent_stats(tmp_path)
    assert back is not None and back.quantiles is None and back.logits is None and back.logits_note == ""


def test_a_quantile_example_whose_focus_is_outside_its_tokens_is_corrupt(tmp_path: Path) -> None:
    raw = sample().to_dict()
    raw["quantiles"] = {
        "edges": [0, 1],
        "per_quantile": 1,
        "examples": [{"interval": 0, "activation": 0.5, "tokens": ["a"], "focus": 3}],
    }
    (tmp_path / STATS_FILE).write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(MapCorruptError, match="outside"):
        read_latent_stats(tmp_path)


def test_a_map_without_stats_reads_none(tmp_path: Path) -> None:
    assert read_latent_stats(tmp_path) is None


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    raw = sample().to_dict() | {"percentiles": [1, 2], "future": {"x": 1}}
    raw["activations"]["unit"] = "relu"
    (tmp_path / STATS_FILE).write_text(json.dumps(raw), encoding="utf-8")
    assert read_latent_stats(tmp_path) == sample()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "unreadable"),
        ('{"schema_version": 1, "latent": 3}', "unreadable"),
        ('{"schema_version": 9}', "version 9"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / STATS_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(MapCorruptError) as caught:
        read_latent_stats(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and words in message and STATS_FILE in message


def test_regrid_and_sparkline() -> None:
    assert regrid([1, 2, 3, 4], 2) == [3, 7]
    assert regrid([1, 2], 8) == [1, 2]
    assert sparkline([0, 1, 8], width=8) == " ▁█"
    assert sparkline([0, 0]) == "  "


def summary_text(map_dir: Path, detail: bool = False) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(map_summary(MapReader(map_dir), detail=detail))
    return console.export_text()


def test_the_detailed_summary_prints_what_the_statistics_view_shows(tmp_path: Path) -> None:
    map_dir = build_focus_map(tmp_path / "maps" / "seeded")
    reader = MapReader(map_dir)
    root = reader.tree[0]
    child = reader.children(root.node_id)[0]
    node = NodeStats(activations=Histogram(0.0, 4.0, (0, 0, 0, 0, 1, 1, 1, 9)), positions=(0, 2, 1, 1))
    low = QuantileExample(0, 0.4, "d", ("I", " do", " \x1b[31mnot", " want"), 2, (0.0, 0.1, 0.4, 0.0))
    high = QuantileExample(1, 3.1, "d", ("I", " really", " want", " it"), 2, (0.0, 0.2, 3.1, 0.0))
    quantiles = QuantileExamples(edges=(0.0, 1.75, 3.5), per_quantile=3, examples=(low, high))
    logits = DecoderLogits(
        positive=(TokenLogit(" want", 1, 2.5), TokenLogit(" wish", 2, 1.5)), negative=(TokenLogit(" hate", 3, -1.25),)
    )
    stats = LatentStats(**{**vars(sample({child.node_id: node})), "quantiles": quantiles, "logits": logits})
    write_latent_stats(map_dir, stats)
    short = summary_text(map_dir)
    assert 'logits: promotes " want" " wish" · suppresses " hate"' in short
    assert "quantile examples" not in short and "top focus tokens" not in short  # build and demo stay short
    text = summary_text(map_dir, detail=True)
    lines = text.splitlines()
    child_line = next(line for line in lines if "└" in line and line.split()[0] == str(child.size))
    assert sparkline(node.activations.counts, 16) in child_line
    assert "top focus tokens" in text and '" want"' in text
    assert any('" want"' in line and "+2.500" in line and '" hate"' in line and "-1.250" in line for line in lines)
    assert lines.index(next(line for line in lines if line.strip().startswith("1.75–3.5"))) < lines.index(
        next(line for line in lines if line.strip().startswith("0–1.75"))
    )  # highest interval first
    assert any("3.1" in line and "I really« want» it" in line for line in lines)
    assert "\x1b" not in text and "␛[31mnot" in text  # the escape made inert
    write_latent_stats(map_dir, LatentStats(**{**vars(sample()), "logits_note": "no unembedding: a BertModel"}))
    text = summary_text(map_dir, detail=True)
    assert "logits: no unembedding: a BertModel" in text
    assert "quantile examples: none recorded (rebuild with --quantiles Q)" in text


def test_summary_prints_density_and_histogram(tmp_path: Path) -> None:
    map_dir = build_focus_map(tmp_path / "maps" / "seeded")
    text = summary_text(map_dir)
    assert "statistics: not recorded (rebuild the map)" in text  # an old map still opens
    write_latent_stats(map_dir, sample())
    text = summary_text(map_dir)
    assert "density: 2.500% (25 firings in 1,000 tokens) · max activation 3.5" in text
    line = next(line for line in text.splitlines() if line.startswith("activations (all firings, 0–4): "))
    assert line.endswith(sparkline(sample().activations.counts))
    assert "positions (0–3): " + sparkline((0, 12, 8, 5)) in text
    (map_dir / STATS_FILE).write_text("{", encoding="utf-8")
    assert "statistics: unreadable" in summary_text(map_dir)  # a broken side file does not stop the summary
