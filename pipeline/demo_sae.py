"""The demo's own SAE: a TopK SAE trained once on MiniLM activations over the stdlib docstrings.

`vista demo` must work offline and on a laptop, so it cannot download a pretrained SAE: it
trains a small one here (about a minute on two CPU cores) and caches it under
`<store>/saes/<cache_key(cfg)>/`. The folder holds what `save_inference_model` writes
(`SAE.load_from_disk(folder)` loads it, and so does `harvest --sae-path folder`), the
per-latent statistics of held-out tokens that `demo_latents.pick_latents` chooses from, and
`demo_sae.json` — config, training figures, package versions — written last, so a folder
without it is unfinished.

How the data is made: the corpus's documents are shuffled with the seed; the first ones
(`n_heldout_tokens` tokens) are held out for evaluation and latent statistics, the next
ones (`n_train_tokens`) are the training set. The model runs only up to the hook (the same
`HookedForward` the harvest uses, so "hook 3" means the same thing in both), without
gradients, in batches of similar length; [CLS], [SEP] and padding are not collected. The
SAE trains for `epochs` passes over the training activations, reshuffled each pass.

torch, transformers and sae-lens are imported inside functions: each takes seconds to
import and a config check or `--help` must not pay for that.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.corpus import Document, iter_documents
from pipeline.demo_latents import (
    LatentStats,
    gather_latent_stats,
    load_latent_stats,
    save_latent_stats,
    token_masks,
)
from pipeline.steps import Progress, no_progress, package_versions, params_of, step_id
from vista_tui.mapdata import atomic_write_json

if TYPE_CHECKING:
    from pipeline.harvest import LoadedModel

STEP = "demo_sae"
VERSION = 1
"""Bump when a change to this module changes the trained SAE: it is part of the cache key."""

DISTRIBUTIONS = ("torch", "transformers", "sae-lens", "numpy")
INFO_FILE = "demo_sae.json"
DONE_FILE = INFO_FILE
"""Written last: a folder without it is an unfinished training run."""
STATS_FILE = "latent_stats.npz"

_DEAD_WINDOW_TOKENS = 50_000
"""A latent that did not fire on this many consecutive training tokens counts as dead and gets
the TopK auxiliary loss (sae-lens counts the window in steps; we convert)."""
_DOCS_PER_TOKENIZER_CALL = 128


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


@dataclass(frozen=True)
class TrainingStats:
    """How the training went: what it cost and how good the SAE is on held-out tokens."""

    n_documents: int
    n_train_tokens: int
    n_heldout_tokens: int
    d_model: int
    forward_seconds: float
    forward_tokens_per_s: float
    """Real (non-special) tokens per second through the model up to the hook."""
    train_steps: int
    train_samples: int
    train_seconds: float
    train_samples_per_s: float
    total_seconds: float
    """Corpus reading, model loading, forward, training and evaluation (not saving)."""
    heldout_mse: float
    """Mean over held-out tokens of the squared reconstruction error summed over d_model."""
    heldout_explained_variance: float
    """1 - total squared error / total variance around the held-out mean."""
    heldout_l0: float
    dead_latents: int
    """Latents that fire on none of the held-out tokens."""
    dead_latents_training: int
    """Latents sae-lens counted dead at the end of training (no firing in the last window)."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainingStats:
        """Read back what `asdict` wrote (unknown keys ignored)."""
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})


@dataclass
class TrainedSAE:
    """A demo SAE on disk and in memory."""

    path: Path
    """The folder: pass it as the harvest's `sae_path`."""
    cfg: DemoSAEConfig
    key: str
    sae: Any
    """The sae-lens inference SAE (`TopKSAE`), as loaded back from `path`."""
    stats: TrainingStats
    latent_stats: LatentStats
    versions: dict[str, str]


def cache_key(cfg: DemoSAEConfig) -> str:
    """Folder name of the SAE made by `cfg` under `<store>/saes/`: a hash of the config and VERSION."""
    return step_id(STEP, VERSION, params_of(cfg), None)


def is_done(out_dir: Path | str) -> bool:
    """Whether `out_dir` holds a finished training run."""
    return (Path(out_dir) / DONE_FILE).is_file()


def train(
    cfg: DemoSAEConfig,
    out_dir: Path | str,
    progress: Progress = no_progress,
    *,
    documents: Iterable[Document] | None = None,
    model: LoadedModel | None = None,
) -> TrainedSAE:
    """Collect activations, train the TopK SAE, evaluate it, and save it to `out_dir` (replaced whole).

    Deterministic on the CPU for a given seed and thread count. Writes into a temporary sibling
    folder and renames it, so `out_dir` is either complete or absent. `documents` replaces the
    corpus that `cfg.corpus` names (tests; the cache key does not see it) and `model` may come
    loaded already.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    data = _collect(cfg, progress, documents, model)
    d_model = int(data.activations.shape[1])
    heldout = data.activations[: data.n_heldout]
    training = data.activations[data.n_heldout :]

    train_started = time.perf_counter()
    sae, dead_training = _fit(cfg, training, progress)
    train_seconds = time.perf_counter() - train_started

    progress(0, None, "evaluating on held-out tokens")
    mse, explained, l0 = _evaluate(sae, heldout)
    latent_stats = gather_latent_stats(
        sae, heldout, data.token_ids[: data.n_heldout], data.punctuation, continuation=data.continuation
    )

    tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    try:
        sae.save_inference_model(tmp_dir)
        save_latent_stats(latent_stats, tmp_dir / STATS_FILE)
        stats = TrainingStats(
            n_documents=data.n_documents,
            n_train_tokens=int(training.shape[0]),
            n_heldout_tokens=int(heldout.shape[0]),
            d_model=d_model,
            forward_seconds=round(data.forward_seconds, 3),
            forward_tokens_per_s=round(data.activations.shape[0] / max(data.forward_seconds, 1e-9), 1),
            train_steps=cfg.n_steps,
            train_samples=cfg.n_steps * cfg.batch_size,
            train_seconds=round(train_seconds, 3),
            train_samples_per_s=round(cfg.n_steps * cfg.batch_size / max(train_seconds, 1e-9), 1),
            total_seconds=round(time.perf_counter() - started, 3),
            heldout_mse=round(mse, 6),
            heldout_explained_variance=round(explained, 6),
            heldout_l0=round(l0, 3),
            dead_latents=int((latent_stats.fire_count == 0).sum()),
            dead_latents_training=dead_training,
        )
        info = {
            "format": "vista-demo-sae",
            "step": STEP,
            "version": VERSION,
            "key": cache_key(cfg),
            "model": data.model_name,
            "hook": data.hook_path,
            "config": params_of(cfg),
            "training": asdict(stats),
            "versions": package_versions(*DISTRIBUTIONS),
        }
        atomic_write_json(tmp_dir / INFO_FILE, info)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return load(out_dir)


def load(out_dir: Path | str) -> TrainedSAE:
    """A finished training run from its folder; FileNotFoundError when unfinished, ValueError when not ours."""
    # sae-lens: heavy import, needed to load the SAE itself.
    from sae_lens import SAE

    out_dir = Path(out_dir)
    info_path = out_dir / INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"{out_dir} holds no finished demo SAE (no {INFO_FILE})")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("format") != "vista-demo-sae" or int(info.get("version", -1)) != VERSION:
        raise ValueError(f"{info_path} is not a demo SAE of version {VERSION}")
    known = DemoSAEConfig.__dataclass_fields__
    cfg = DemoSAEConfig(**{name: value for name, value in info["config"].items() if name in known})
    return TrainedSAE(
        path=out_dir,
        cfg=cfg,
        key=str(info["key"]),
        sae=SAE.load_from_disk(out_dir, device="cpu"),
        stats=TrainingStats.from_dict(info["training"]),
        latent_stats=load_latent_stats(out_dir / STATS_FILE),
        versions={str(k): str(v) for k, v in info.get("versions", {}).items()},
    )


# -- activations ---------------------------------------------------------------------------


@dataclass
class _Activations:
    """The hook's activations of real tokens: held-out rows first, then training rows."""

    activations: Any
    """torch float32 (n, d_model)."""
    token_ids: np.ndarray
    """int32 (n,): the token at each row (for the latent statistics)."""
    n_heldout: int
    n_documents: int
    forward_seconds: float
    punctuation: np.ndarray
    """bool (vocab,): token ids whose text has no letter or digit."""
    continuation: np.ndarray
    """bool (vocab,): token ids of pieces inside a word ("##ing")."""
    model_name: str
    hook_path: str


@dataclass
class _Piece:
    """One model input: a document or a max_length piece of a long one."""

    input_ids: np.ndarray
    collect: np.ndarray
    """True where the token's activation is collected (real tokens within the budget)."""
    row: int
    """Row of the first collected token in the activation matrix."""


def _collect(
    cfg: DemoSAEConfig, progress: Progress, documents: Iterable[Document] | None, model: LoadedModel | None
) -> _Activations:
    """Run the model to the hook over shuffled documents until both token budgets are filled."""
    # torch, and transformers through the harvest's model loading: heavy, only when training.
    import torch

    from pipeline.harvest import HookedForward, load_model, resolve_hook

    documents = list(iter_documents([cfg.corpus]) if documents is None else documents)
    random.Random(cfg.seed).shuffle(documents)
    loaded = model if model is not None else load_model(cfg.model, device="cpu")
    tokenizer = loaded.tokenizer
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if positions is not None and cfg.max_length > positions:
        raise ValueError(f"max_length must be at most {positions} for model {cfg.model}, got {cfg.max_length}")
    module, hook_path = resolve_hook(loaded.model, cfg.hook)
    forward = HookedForward(loaded.model, module, hook_path)

    budgets = [cfg.n_heldout_tokens, cfg.n_train_tokens]
    pieces: list[_Piece] = []
    token_ids: list[np.ndarray] = []
    filled, split, n_documents, n_total = 0, 0, 0, 0
    for start in range(0, len(documents), _DOCS_PER_TOKENIZER_CALL):
        if split == len(budgets):
            break
        group = documents[start : start + _DOCS_PER_TOKENIZER_CALL]
        encoded = tokenizer(
            [document.text for document in group],
            truncation=True,
            max_length=cfg.max_length,
            return_overflowing_tokens=True,
            stride=0,
            return_special_tokens_mask=True,
        )
        previous_doc = -1
        for i, doc_index in enumerate(encoded["overflow_to_sample_mapping"]):
            if doc_index != previous_doc:
                # Documents, not tokens, are split between held-out and training: a document's
                # tokens are alike, and sharing them would flatter the held-out figures.
                if split < len(budgets) and filled >= budgets[split]:
                    split, filled = split + 1, 0
                if split == len(budgets):
                    break
                previous_doc = doc_index
                n_documents += 1
            ids = np.asarray(encoded["input_ids"][i], dtype=np.int64)
            collect = ~np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
            left = budgets[split] - filled
            if left <= 0:
                continue  # the rest of a long document that already filled the budget
            real = np.flatnonzero(collect)
            if len(real) > left:
                collect[real[left:]] = False  # still context for the kept tokens, not collected
            n = int(collect.sum())
            if n == 0:
                continue
            pieces.append(_Piece(ids, collect, n_total))
            token_ids.append(ids[collect].astype(np.int32))
            filled += n
            n_total += n
    if n_total == 0:
        raise ValueError(f"corpus {cfg.corpus!r} gave no tokens to train the demo SAE on")
    if split == 0 or (split == 1 and filled == 0):
        raise ValueError(
            f"corpus {cfg.corpus!r} has too few tokens for n_heldout_tokens={cfg.n_heldout_tokens}"
            " plus training tokens; lower n_heldout_tokens"
        )
    n_heldout = cfg.n_heldout_tokens
    if n_total - n_heldout < cfg.batch_size:
        raise ValueError(
            f"corpus {cfg.corpus!r} leaves {n_total - n_heldout} training tokens after the held-out ones,"
            f" fewer than batch_size={cfg.batch_size}; lower n_heldout_tokens or batch_size"
        )

    # Longest first and stable: batches pad little, and the order is deterministic.
    order = sorted(range(len(pieces)), key=lambda p: -len(pieces[p].input_ids))
    activations: Any = None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    forward_started = time.perf_counter()
    done = 0
    with torch.inference_mode():
        for start in range(0, len(order), cfg.forward_batch_size):
            batch = [pieces[p] for p in order[start : start + cfg.forward_batch_size]]
            width = len(batch[0].input_ids)
            input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
            attention = np.zeros((len(batch), width), dtype=np.int64)
            collect = np.zeros((len(batch), width), dtype=bool)
            for row, piece in enumerate(batch):
                input_ids[row, : len(piece.input_ids)] = piece.input_ids
                attention[row, : len(piece.input_ids)] = 1
                collect[row, : len(piece.collect)] = piece.collect
            # Collected tokens come out row by row; each piece's go to its own rows of the matrix.
            destination = np.concatenate([piece.row + np.arange(int(piece.collect.sum())) for piece in batch])
            hidden = forward(torch.from_numpy(input_ids), torch.from_numpy(attention))
            if activations is None:
                activations = torch.empty((n_total, hidden.shape[-1]), dtype=torch.float32)
            activations[torch.from_numpy(destination)] = hidden[torch.from_numpy(collect)].float()
            done += len(destination)
            progress(done, n_total, "MiniLM forward to the hook")
    forward_seconds = time.perf_counter() - forward_started
    punctuation, continuation = token_masks(tokenizer)
    return _Activations(
        activations=activations,
        token_ids=np.concatenate(token_ids),
        n_heldout=n_heldout,
        n_documents=n_documents,
        forward_seconds=forward_seconds,
        punctuation=punctuation,
        continuation=continuation,
        model_name=loaded.name,
        hook_path=hook_path,
    )


# -- training ------------------------------------------------------------------------------


def _batches(training: Any, cfg: DemoSAEConfig, progress: Progress) -> Iterator[Any]:
    """Training batches forever: each epoch a fresh seeded permutation, whole batches only."""
    import torch  # heavy; the caller already imported it

    generator = torch.Generator().manual_seed(cfg.seed)
    per_epoch = training.shape[0] // cfg.batch_size
    step = 0
    while True:
        permutation = torch.randperm(training.shape[0], generator=generator)
        for b in range(per_epoch):
            yield training[permutation[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            step += 1
            progress(min(step, cfg.n_steps), cfg.n_steps, "training the SAE")


def _fit(cfg: DemoSAEConfig, training: Any, progress: Progress) -> tuple[Any, int]:
    """Train a sae-lens TopK SAE on the activations; return it and its dead-latent count."""
    # sae-lens/torch: heavy imports, only when training.
    import torch
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    sae_cfg = TopKTrainingSAEConfig(
        d_in=int(training.shape[1]),
        d_sae=cfg.d_sae,
        k=cfg.k,
        dtype="float32",
        device="cpu",
        metadata=SAEMetadata(
            model_name=cfg.model,
            hook_name=cfg.hook,
            context_size=cfg.max_length,
            dataset_path=cfg.corpus,
        ),
    )
    # The SAE's initialisation draws from torch's global generator: seed it, then give it back.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = TopKTrainingSAE(sae_cfg)
    with torch.no_grad():
        # Start the decoder bias at the data mean: the first steps then learn directions, not the offset.
        sae.b_dec.copy_(training.mean(dim=0))

    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.n_steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr_end,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=min(cfg.warmup_steps, max(cfg.n_steps - 1, 0)),
        device="cpu",
        dead_feature_window=max(1, _DEAD_WINDOW_TOKENS // cfg.batch_size),
        feature_sampling_window=max(1, cfg.n_steps),
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_batches(training, cfg, progress))
    trained = trainer.fit()
    return trained, int(trainer.dead_neurons.sum().item())


def _evaluate(sae: Any, heldout: Any, batch: int = 4096) -> tuple[float, float, float]:
    """(MSE per token, explained variance, mean L0) of the SAE on held-out activations."""
    import torch  # heavy; the caller already imported it

    mean = heldout.mean(dim=0)
    error, variance, active = 0.0, 0.0, 0.0
    with torch.no_grad():
        for start in range(0, heldout.shape[0], batch):
            x = heldout[start : start + batch]
            codes = sae.encode(x)
            error += float((sae.decode(codes) - x).pow(2).sum())
            variance += float((x - mean).pow(2).sum())
            active += float((codes > 0).sum())
    n = max(int(heldout.shape[0]), 1)
    return error / n, 1.0 - error / max(variance, 1e-12), active / n


__all__ = [
    "DONE_FILE",
    "STEP",
    "VERSION",
    "DemoSAEConfig",
    "TrainedSAE",
    "TrainingStats",
    "cache_key",
    "is_done",
    "load",
    "train",
]
