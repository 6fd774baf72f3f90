"""Hub downloads (issue 13, item 5): `build` lets transformers and sae-lens download unless `--offline` or a
user-set HF_HUB_OFFLINE; `demo` and `label` stay offline.

The loaders of transformers and sae-lens are replaced by recorders (third-party code, so that no test
reaches the network): each records whether it was asked for local files only, then fails as a missing
model does, which our loaders turn into one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli
from pipeline import models as M

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every transformers/sae-lens load is recorded (its local_files_only, the hub's offline flag) and fails."""
    import huggingface_hub.constants as constants
    import transformers
    from sae_lens import SAE

    calls: list[dict[str, Any]] = []
    # hub_offline() sets huggingface_hub's copy of the flag: put it back after the test.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)

    def tokenizer(source: str, **kwargs: Any) -> Any:
        """Records a transformers load, then fails as a model missing from the hub does."""
        calls.append({"loader": "transformers", "source": source, "local_files_only": kwargs.get("local_files_only")})
        raise OSError(f"{source} is not here (recorded)")

    def sae(release: str, sae_id: str, **kwargs: Any) -> Any:
        """Records an sae-lens load (it has no local_files_only: it follows the hub's flag), then fails."""
        calls.append({"loader": "sae-lens", "source": f"{release}/{sae_id}", "hub_offline": constants.HF_HUB_OFFLINE})
        raise OSError(f"{release}/{sae_id} is not here (recorded)")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(SAE, "from_pretrained", sae)
    return calls


def test_downloads_allowed_when_hub_offline_is_unset(
    hub: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(M.ModelError, match=r"^model some-org/some-model could not be downloaded .*hf auth login"):
        M.load_model("some-org/some-model", "cpu")
    with pytest.raises(M.ModelError, match=r"^SAE gpt2-small-res-jb/blocks\.0\.hook_resid_pre could not be downloaded"):
        M.load_sae(sae_release="gpt2-small-res-jb", sae_id="blocks.0.hook_resid_pre")
    assert hub == [
        {"loader": "transformers", "source": "some-org/some-model", "local_files_only": False},
        {"loader": "sae-lens", "source": "gpt2-small-res-jb/blocks.0.hook_resid_pre", "hub_offline": False},
    ]


@pytest.mark.parametrize("value", ["1", "true", "ON"])
def test_a_user_set_hf_hub_offline_holds(
    value: str, hub: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(M.ModelError, match=r"^model some-org/some-model was not found locally .*downloads are off"):
        M.load_model("some-org/some-model", "cpu")
    with pytest.raises(M.ModelError, match=r"not in the local Hugging Face cache .*HF_HUB_OFFLINE unset"):
        M.load_sae(sae_release="gpt2-small-res-jb", sae_id="blocks.0.hook_resid_pre")
    assert [call.get("local_files_only", call.get("hub_offline")) for call in hub] == [True, True]


def _build_argv(tmp_path: Path, *extra: str) -> list[str]:
    """A `build` command line naming a hub model that the recorder refuses."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one small document\n", encoding="utf-8")
    sae_dir = tmp_path / "sae"
    # A folder the pre-load checks accept (they read cfg.json only), so that the build reaches the loaders.
    sae_dir.mkdir(exist_ok=True)
    (sae_dir / "cfg.json").write_text(
        json.dumps({"d_in": 8, "d_sae": 16, "metadata": {"hook_name": "blocks.0.hook_resid_post"}}), encoding="utf-8"
    )
    (sae_dir / "sae_weights.safetensors").touch()  # never read: the model's loader refuses first
    return [
        "build",
        "--model",
        "some-org/some-model",
        "--hook",
        "0",
        "--sae-path",
        str(sae_dir),
        "--corpus",
        str(corpus),
        "--latents",
        "1",
        "--cache",
        str(tmp_path / "store"),
        "--device",
        "cpu",
        *extra,
    ]


def test_build_downloads_by_default_and_not_with_offline(
    hub: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert cli.main(_build_argv(tmp_path)) == cli.EXIT_BAD_INPUT
    assert "HF_HUB_OFFLINE" not in os.environ
    assert cli.main(_build_argv(tmp_path, "--offline")) == cli.EXIT_BAD_INPUT
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # Online, the loader was asked to download; offline, the pre-load check found no config.json in the
    # cache and stopped before any loader ran.
    assert [call["local_files_only"] for call in hub] == [False]
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "could not be downloaded" in errors[0]
    assert "downloads are off (--offline or HF_HUB_OFFLINE=1)" in errors[1]


@pytest.mark.parametrize(("command", "offline"), [("build", False), ("demo", True), ("label", True), (None, False)])
def test_which_commands_keep_the_hub_off(command: str | None, offline: bool) -> None:
    assert (cli.argv_command([command] if command else []) in cli.OFFLINE_COMMANDS) is offline
