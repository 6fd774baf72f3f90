"""What the demo SAE is: the step's identity and the config that is its cache key.

Kept apart from `sae` (the training) so that `activations` can read the config without an
import cycle. `DemoSAEConfig` validates itself without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

STEP = "demo_sae"
VERSION = 1
"""Bump when a change to the demo SAE's code changes the trained SAE: it is part of the cache key."""

DISTRIBUTIONS = ("torch", "transformers", "sae-lens", "numpy")
"""Distributions whose versions demo_sae.json records."""


@dataclass(frozen=True)
class DemoSAEConfig:
    """What the demo SAE is trained on and how; every field is part of the cache key."""

    model: str = "minilm"
    """A model the harvest can load (`minilm` = the bundled all-MiniLM-L6-v2)."""
    hook: str = "3"
    """Block index (output of that block, as in the harvest). Block 3 of MiniLM's six, measured
    against the others (2048 latents, 100k tokens each): blocks 1/2/3/4/5 left 355/267/176/72/49
    latents with one token holding > 80 % of their top activations, and explained 85/81/81/84/73 %
    of the variance; block 3's many-token latents were the coherent ones (cause / occur /
    encounter; safe / escape / extract), block 4-5's mostly mixtures of unrelated words."""
    corpus: str = "python-stdlib-docstrings"
    d_sae: int = 2048
    k: int = 32
    """Latents active per token (TopK)."""
    n_train_tokens: int = 150_000
    """Distinct tokens whose activations are collected for training (the forward pass's cost)."""
    n_heldout_tokens: int = 30_000
    """Tokens of other documents, for the final MSE / explained variance and the latent statistics."""
    epochs: int = 2
    """Passes over the training activations (the training's cost is epochs × n_train_tokens)."""
    batch_size: int = 1024
    """Activations per SAE training step."""
    lr: float = 2e-3
    lr_end: float = 2e-4
    """Learning rate at the end of the cosine schedule."""
    warmup_steps: int = 20
    forward_batch_size: int = 32
    """Model inputs per forward pass."""
    seed: int = 0
    max_length: int = 128
    """Tokens per model input, special tokens included; longer documents are cut into pieces."""

    def __post_init__(self) -> None:
        """Coerce an int hook to its string, then raise ValueError naming the first bad field."""
        if isinstance(self.hook, int) and not isinstance(self.hook, bool):
            object.__setattr__(self, "hook", str(self.hook))
        for name in ("model", "hook", "corpus"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        for name in ("d_sae", "k", "n_train_tokens", "n_heldout_tokens", "epochs", "batch_size", "forward_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.k > self.d_sae:
            raise ValueError(f"k must be at most d_sae ({self.d_sae}), got {self.k!r}")
        if self.batch_size > self.n_train_tokens:
            raise ValueError(
                f"batch_size must be at most n_train_tokens ({self.n_train_tokens}), got {self.batch_size!r}"
            )
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 4:
            raise ValueError(
                f"max_length must be an integer of at least 4 (room for special tokens), got {self.max_length!r}"
            )
        for name in ("lr", "lr_end"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
                raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
        if self.lr_end > self.lr:
            raise ValueError(f"lr_end must not exceed lr ({self.lr}), got {self.lr_end!r}")

    @property
    def n_steps(self) -> int:
        """SAE training steps (whole batches only)."""
        return self.epochs * (self.n_train_tokens // self.batch_size)


Config = DemoSAEConfig
"""The step's config under the name every step exports."""
