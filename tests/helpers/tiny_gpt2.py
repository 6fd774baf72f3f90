"""A tiny, randomly initialised GPT-2 with its LM head and a word-level fast tokenizer, built offline.

The directory it writes is what `GPT2LMHeadModel.save_pretrained` and
`PreTrainedTokenizerFast.save_pretrained` write (`config.json` naming `GPT2LMHeadModel`, the
weights, `tokenizer.json`), so `pipeline.models.load_model(folder)` loads it like a checkpoint
from the hub. Sizes: 2 blocks of width 32, 2 heads, 64 positions, a vocabulary of TINY_VOCAB_SIZE
tokens (four special ones, then the words of TINY_WORDS, then filler). The LM head is tied to the
token embeddings, as in GPT-2.

Same seed → identical weights. Builds in well under a second on a CPU.
"""

from __future__ import annotations

from pathlib import Path

TINY_D_MODEL = 32
TINY_N_LAYER = 2
TINY_VOCAB_SIZE = 100
TINY_POSITIONS = 64
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
"""Ids 0..3: padding, unknown, beginning and end of sequence."""
TINY_WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "a",
    "cat",
    "sat",
    "on",
    "mat",
    "and",
    "ran",
    "to",
    "house",
    "red",
    "blue",
    "green",
    "sun",
    "moon",
    "star",
    "tree",
    "river",
    "stone",
    "bird",
    "sings",
    "in",
    "morning",
    "light",
    "slow",
    "fast",
    "old",
    "new",
    "small",
    "big",
    "day",
    "night",
    "rain",
    "wind",
    "cold",
    "warm",
    "bright",
    "dark",
    "city",
    "road",
    "car",
    "boat",
    "sea",
    "sky",
    "cloud",
    "fire",
    "water",
    "earth",
)
"""Words of the vocabulary; a corpus written with them has no unknown tokens."""


def tiny_vocab() -> dict[str, int]:
    """Token → id: the special tokens, the words, then filler tokens up to TINY_VOCAB_SIZE."""
    tokens = list(SPECIAL_TOKENS) + list(dict.fromkeys(TINY_WORDS)) + [".", ","]
    tokens += [f"w{i}" for i in range(TINY_VOCAB_SIZE - len(tokens))]
    return {token: i for i, token in enumerate(tokens)}


def build_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """Write the tiny GPT-2 (GPT2LMHeadModel) and its tokenizer to `folder`; returns `folder`."""
    # torch/transformers/tokenizers: heavy imports, only for the tests that build the model.
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = tiny_vocab()
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    config = GPT2Config(
        n_layer=TINY_N_LAYER,
        n_embd=TINY_D_MODEL,
        n_head=2,
        vocab_size=TINY_VOCAB_SIZE,
        n_positions=TINY_POSITIONS,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = GPT2LMHeadModel(config)
    finally:
        torch.random.set_rng_state(generator_state)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
