"""The local transformers backend of the labeller, on a tiny randomly initialised chat model saved to disk.

The model is real (a 2-layer Llama with a byte-level BPE tokenizer and a chat template, written
with save_pretrained and loaded back from local files only), but untrained: its replies are
garbage, so every node it is asked about must end up `failed: <why>` while the run finishes,
counts its tokens and leaves nothing in the answer cache.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import label
from pipeline.label import CACHE_FILE, SYSTEM_PROMPT, LabelConfig, LabelError, LocalChatModel
from pipeline.label.backends import UsageCounter as _Counter
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import MapReader

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)
PARSE_FAILURES = re.compile(
    r"failed: (empty reply|reply is not JSON|reply is not a JSON object|reply has no string '\w+'"
    r"|reply \w+ looks like injected instructions|empty label)"
)


def save_tiny_chat_model(
    directory: Path, chat_template: str | None = CHAT_TEMPLATE, positions: int = 2048, vocab_size: int | None = None
) -> Path:
    """A seeded, untrained 2-layer Llama and a byte-level BPE tokenizer trained on the system prompt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([SYSTEM_PROMPT, '{"label": "a", "explanation": "b", "visual_prompt": "c"}'], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny-chat")


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    return build_synthetic_map(tmp_path / "m", n=120)


def local(model: Path, **overrides: object) -> LabelConfig:
    settings: dict[str, object] = {
        "backend": "transformers",
        "model": str(model),
        "base_url": None,
        "device": "cpu",
        "max_new_tokens": 12,
        "n_contexts": 3,
    }
    settings.update(overrides)
    return LabelConfig(**settings)  # type: ignore[arg-type]


def test_every_node_is_asked_and_garbage_fails_with_a_reason(
    chat_model_dir: Path, map_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    generate = LocalChatModel._run_generate

    def counting(self: LocalChatModel, loaded: Any, prompts: list[list[int]], counter: _Counter) -> list[str]:
        batches.append(len(prompts))
        return generate(self, loaded, prompts, counter)

    monkeypatch.setattr(LocalChatModel, "_run_generate", counting)
    report = label.run(local(chat_model_dir, concurrency=4), map_dir)
    assert sum(batches) == report.n_nodes and 1 < max(batches) <= 4  # one model, prompts batched
    tree = MapReader(map_dir).tree
    assert report.n_nodes == report.n_requested == report.n_requests == len(tree)
    assert report.n_ok + report.n_failed == len(tree) and report.n_retries == 0
    assert report.n_failed > 0
    assert report.prompt_tokens > 0 and report.completion_tokens > 0
    assert report.completion_tokens <= len(tree) * 12
    assert report.cost_usd is None
    for node in tree:
        if node.node_id in report.failures:
            assert PARSE_FAILURES.fullmatch(node.labels.label_status), node.labels.label_status
            assert node.labels.llm_label == ""
        else:  # a random model that happens to answer well is labelled like any other
            assert node.labels.label_status == "ok" and node.labels.llm_label
    cached = (map_dir / CACHE_FILE).read_text().splitlines() if (map_dir / CACHE_FILE).exists() else []
    assert len(cached) == report.n_ok  # only valid answers are cached
    step = MapReader(map_dir).manifest.steps["label"]
    assert step.params["backend"] == "transformers" and step.params["model"] == str(chat_model_dir)
    assert step.params["base_url"] is None

    # A rerun asks again for exactly the nodes that failed; the valid answers come from the cache.
    again = label.run(local(chat_model_dir, concurrency=1), map_dir)
    assert again.n_cached == report.n_ok and again.n_requested == report.n_failed
    assert again.failures == report.failures  # greedy: the same garbage, batched or not


def test_prices_give_a_cost_for_a_local_run_too(chat_model_dir: Path, map_dir: Path) -> None:
    leaf = next(n for n in MapReader(map_dir).tree if n.depth == 2)
    report = label.run(local(chat_model_dir, price_in=1.0, price_out=4.0), map_dir, node_ids=[leaf.node_id])
    assert report.n_requests == 1
    assert report.cost_usd == pytest.approx((report.prompt_tokens + 4 * report.completion_tokens) / 1e6)


def test_greedy_is_reproducible_and_sampling_follows_the_seed(chat_model_dir: Path) -> None:
    prompt = label.build_prompt(["the «mustard» seed was yellow"], [])
    counter = _Counter()
    greedy = LocalChatModel(local(chat_model_dir))
    assert greedy.chat(prompt, counter) == greedy.chat(prompt, counter)
    sampled = [LocalChatModel(local(chat_model_dir, temperature=1.0, seed=seed)) for seed in (1, 1, 2)]
    first, same, other = (model.chat(prompt, counter) for model in sampled)
    assert first == same and first != other
    assert counter.requests == 5 and counter.prompt_tokens > 0


def test_chat_template_is_applied_and_plain_format_is_the_fallback(chat_model_dir: Path, tmp_path: Path) -> None:
    text, special = LocalChatModel(local(chat_model_dir)).chat_text("PROMPT")
    assert text.startswith("<s>system: You name features") and text.endswith("user: PROMPT\n<s>assistant: ")
    assert not special  # the template writes its own <s>

    plain_dir = save_tiny_chat_model(tmp_path / "plain", chat_template=None)
    plain = LocalChatModel(local(plain_dir))
    text, special = plain.chat_text("PROMPT")
    assert text == f"System: {SYSTEM_PROMPT}\n\nUser: PROMPT\n\nAssistant:" and special
    assert isinstance(plain.chat("PROMPT", _Counter()), str)


def test_a_template_without_a_system_turn_gets_the_instructions_in_the_user_turn(
    chat_model_dir: Path, tmp_path: Path
) -> None:
    gemma_like = (
        "{% for message in messages %}{% if message['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<s>{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}<s>model: "
    )
    directory = save_tiny_chat_model(tmp_path / "gemma-like", chat_template=gemma_like)
    text, _ = LocalChatModel(local(directory)).chat_text("PROMPT")
    assert text == f"<s>user: {SYSTEM_PROMPT}\n\nPROMPT\n<s>model: "


def test_a_prompt_longer_than_the_model_fails_that_node(map_dir: Path, tmp_path: Path) -> None:
    short = save_tiny_chat_model(tmp_path / "short", positions=64)
    report = label.run(local(short), map_dir)
    assert report.n_ok == 0 and report.n_failed == report.n_nodes
    assert report.prompt_tokens == 0  # nothing was generated
    reason = next(iter(report.failures.values()))
    assert re.fullmatch(r"prompt of \d+ tokens \+ 12 new ones does not fit the model's 64 positions; .*", reason)


def test_a_failing_generate_fails_its_nodes_and_the_run_finishes(map_dir: Path, tmp_path: Path) -> None:
    # A tokenizer with more tokens than the model's embedding: the forward pass raises.
    mismatched = save_tiny_chat_model(tmp_path / "mismatched", vocab_size=128)
    report = label.run(local(mismatched, concurrency=4), map_dir)
    assert report.n_ok == 0 and report.n_failed == report.n_nodes == report.n_requested
    assert {reason.split(":")[0] for reason in report.failures.values()} == {"generation failed (IndexError"}
    assert all(n.labels.label_status.startswith("failed: generation failed") for n in MapReader(map_dir).tree)


def test_a_model_that_cannot_load_is_one_error(map_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(LabelError) as caught:
        label.run(local(broken), map_dir)
    message = str(caught.value)
    assert message.startswith(f"chat model at {broken} could not be loaded (") and "\n" not in message
    assert not (map_dir / CACHE_FILE).exists()


def test_weights_missing_is_one_cli_line(
    chat_model_dir: Path, map_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    no_weights = tmp_path / "no-weights"
    shutil.copytree(chat_model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    code = main(["label", str(map_dir), "--backend", "transformers", "--model", str(no_weights), "--no-agreement"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"chat model at {no_weights} could not be loaded" in errors[0]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing", "chat model directory {d}/missing does not exist; pass --model with a local"),
        (lambda d: d, "{d} is not a transformers model (no config.json); pass the directory"),
    ],
    ids=["missing-dir", "not-a-model"],
)
def test_cli_wrong_model_directory_is_one_line(map_dir: Path, tmp_path: Path, make, expected: str) -> None:  # type: ignore[no-untyped-def]
    model = make(tmp_path / "models")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "README.md").write_text("not weights")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "label", str(map_dir), "--backend", "transformers", "--model", str(model)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "COLUMNS": "400"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: " + expected.format(d=tmp_path / "models"))
