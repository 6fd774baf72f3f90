"""The demo's own SAE: a TopK SAE trained once on MiniLM activations over the stdlib docstrings.

`vista demo` must work offline and on a laptop, so it cannot download a pretrained SAE: it
trains a small one here (about a minute on two CPU cores) and caches it under
`<store>/saes/<cache_key(cfg)>/`. The folder holds what `save_inference_model` writes
(`SAE.load_from_disk(folder)` loads it, and so does `harvest --sae-path folder`), the
per-latent statistics of held-out tokens that `latents.pick_latents` chooses from, and
`demo_sae.json` — config, training figures, package versions — written last, so a folder
without it is unfinished.

How the data is made is `activations`' job (held-out documents first, then training ones,
MiniLM run to the hook); this module trains the SAE for `epochs` passes over the training
activations, reshuffled each pass, evaluates it on the held-out ones, and saves it.

torch and sae-lens are imported inside functions: each takes seconds to import and a config
check or `--help` must not pay for that.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.corpus import Document
from pipeline.demo.activations import Activations, collect_activations
from pipeline.demo.latents import LatentStats, gather_latent_stats, load_latent_stats, save_latent_stats
from pipeline.demo.sae_config import DISTRIBUTIONS, STEP, VERSION, Config, DemoSAEConfig
from pipeline.models import LoadedModel
from pipeline.steps import Progress, no_progress, package_versions, params_of, step_id
from vista_tui.mapdata import atomic_write_json

INFO_FILE = "demo_sae.json"
DONE_FILE = INFO_FILE
"""Written last: a folder without it is an unfinished training run."""
STATS_FILE = "latent_stats.npz"

WIDE_FACTOR = 4
"""The demo's wide SAE (`vista demo --wide`) has this many times the latents of the demo SAE."""

_DEAD_WINDOW_TOKENS = 50_000
"""A latent that did not fire on this many consecutive training tokens counts as dead and gets
the TopK auxiliary loss (sae-lens counts the window in steps; we convert)."""


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


def wide_config(cfg: DemoSAEConfig) -> DemoSAEConfig:
    """The wide SAE's config: `WIDE_FACTOR` times the latents, trained alike on the same activations."""
    return replace(cfg, d_sae=cfg.d_sae * WIDE_FACTOR)


def cache_key(cfg: DemoSAEConfig) -> str:
    """Folder name of the SAE made by `cfg` under `<store>/saes/`: a hash of the config and VERSION."""
    return step_id(STEP, VERSION, params_of(cfg), None)


def same_activations(a: DemoSAEConfig, b: DemoSAEConfig) -> bool:
    """Whether two configs collect the same activations (they differ only in how the SAE is trained)."""
    reads = (
        "model",
        "hook",
        "corpus",
        "n_train_tokens",
        "n_heldout_tokens",
        "forward_batch_size",
        "seed",
        "max_length",
    )
    return all(getattr(a, name) == getattr(b, name) for name in reads)


def is_done(out_dir: Path | str) -> bool:
    """Whether `out_dir` holds a finished training run."""
    return (Path(out_dir) / DONE_FILE).is_file()


def train(
    cfg: DemoSAEConfig,
    out_dir: Path | str,
    *,
    progress: Progress = no_progress,
    documents: Iterable[Document] | None = None,
    model: LoadedModel | None = None,
    data: Activations | None = None,
) -> TrainedSAE:
    """Collect activations, train the TopK SAE, evaluate it, and save it to `out_dir` (replaced whole).

    Deterministic on the CPU for a given seed and thread count. Writes into a temporary sibling
    folder and renames it, so `out_dir` is either complete or absent. `documents` replaces the
    corpus that `cfg.corpus` names (tests; the cache key does not see it) and `model` may come
    loaded already. `data`: activations collected already for a config that reads the same tokens
    (`same_activations`), so that two SAEs of different widths train on one forward pass.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if data is None:
        data = collect_activations(cfg, progress, documents, model)
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


run = train
"""The step's entry point under the name every step exports: `run(cfg, out_dir, *, progress=…)`."""


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
    "DISTRIBUTIONS",
    "DONE_FILE",
    "INFO_FILE",
    "STATS_FILE",
    "STEP",
    "VERSION",
    "WIDE_FACTOR",
    "Config",
    "DemoSAEConfig",
    "TrainedSAE",
    "TrainingStats",
    "cache_key",
    "is_done",
    "load",
    "run",
    "same_activations",
    "train",
    "wide_config",
]
