"""A tiny, randomly initialised Stable-Diffusion-style checkpoint, built offline for tests and benchmarks.

The directory it writes is a normal diffusers layout (`model_index.json`, `unet/`, `vae/`,
`text_encoder/`, `tokenizer/`, `scheduler/`), so anything that loads a local SD checkpoint
(`pipeline.render.load_components`, `StableDiffusionPipeline.from_pretrained`) loads it.

Sizes, so that tests can pick canvases that fit:
- VAE: 2 blocks → **downsampling factor 2** (a 16×16 image is an 8×8 latent), 4 latent channels.
- UNet: sample_size 8 (latent cells), so its native window is 8 latent cells = 16 pixels.
- Text encoder: CLIP, hidden 32, 2 layers, 77 positions; tokenizer: byte-level BPE with a
  made-up vocabulary of 1000 tokens (bytes, bytes at the end of a word, letter pairs).

Same seed → byte-identical weights. Builds in about a second on a CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

TINY_VAE_FACTOR = 2
"""Pixels per latent cell of the tiny VAE."""
TINY_WINDOW_PX = 16
"""The tiny UNet's native size in pixels (sample_size 8 × TINY_VAE_FACTOR)."""
TINY_VOCAB_SIZE = 1000

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def _write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """Write a deterministic CLIP-style `vocab.json` and `merges.txt` with TINY_VOCAB_SIZE tokens."""
    import json

    chars = list(_bytes_to_unicode().values())
    vocab: list[str] = chars + [c + "</w>" for c in chars]
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    merges: list[str] = []
    # Letter pairs, commonest letters first, until the vocabulary is full (ids must be dense).
    room = TINY_VOCAB_SIZE - len(vocab) - 2
    pairs = [(a, b) for a in letters for b in letters]
    for i, (a, b) in enumerate(pairs[:room]):
        if i % 2 == 0:
            merges.append(f"{a} {b}")
            vocab.append(a + b)
        else:
            merges.append(f"{a} {b}</w>")
            vocab.append(a + b + "</w>")
    vocab += [_BOS, _EOS]
    assert len(vocab) == TINY_VOCAB_SIZE, len(vocab)
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def build_tiny_sd(path: Path, seed: int = 0) -> Path:
    """Build a tiny random SD checkpoint at `path` (a diffusers directory) and return `path`."""
    path = Path(path)
    random_sd_pipeline(seed=seed, arch="tiny").save_pretrained(path, safe_serialization=True)
    return path


def _tokenizer() -> Any:
    # transformers is heavy: only tests that render pay for it.
    import json

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = _write_tokenizer_files(Path(tmp))
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        lines = merges_file.read_text(encoding="utf-8").splitlines()[1:]
    return CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(line.split()) for line in lines if line],
        unk_token=_EOS,
        bos_token=_BOS,
        eos_token=_EOS,
        pad_token=_EOS,
        model_max_length=77,
    )


def random_sd_pipeline(seed: int = 0, arch: Literal["tiny", "sd15"] = "tiny") -> Any:
    """A randomly initialised StableDiffusionPipeline, in memory (float32, CPU).

    "tiny": the test model described in the module doc. "sd15": the full Stable Diffusion 1.5
    UNet and VAE architecture (860M + 84M parameters, VAE factor 8, 64-cell windows) with a
    CLIP-L-sized text encoder, for timing on a GPU without downloading weights; it takes tens
    of seconds to build and ~4 GB of memory.
    """
    # torch / diffusers / transformers are heavy: only tests that render pay for them.
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if arch not in ("tiny", "sd15"):
        raise ValueError(f"arch must be 'tiny' or 'sd15', got {arch!r}")
    tokenizer = _tokenizer()
    full = arch == "sd15"
    hidden = 768 if full else 32
    torch.manual_seed(seed)
    if full:
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=hidden, attention_head_dim=8)
    else:
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=hidden,
            attention_head_dim=8,
            norm_num_groups=32,
        )
    torch.manual_seed(seed + 1)
    vae_blocks = (128, 256, 512, 512) if full else (32, 64)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=vae_blocks,
        down_block_types=("DownEncoderBlock2D",) * len(vae_blocks),
        up_block_types=("UpDecoderBlock2D",) * len(vae_blocks),
        latent_channels=4,
        layers_per_block=2 if full else 1,
        norm_num_groups=32,
        sample_size=512 if full else TINY_WINDOW_PX,
    )
    torch.manual_seed(seed + 2)
    text_config = CLIPTextConfig(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=4 * hidden if full else 64,
        num_hidden_layers=12 if full else 2,
        num_attention_heads=12 if full else 4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=hidden,
    )
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
