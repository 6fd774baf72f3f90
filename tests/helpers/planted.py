"""Seeded data with a known sense structure, for checking that the cluster tree finds it.

`planted_layout` is shaped like a real UMAP layout of a polysemous latent: well-separated
islands of even density (senses) at uneven distances along a row, two of them made of three
sub-islands (sub-senses), with a sparse background above and below. The uneven gaps are the
point: HDBSCAN's condensed tree then sheds the far senses one by one before the near ones
split, the chain that used to bury the senses under pass-through levels.

`planted_codes` is the same structure as SAE-like sparse codes (one latent group per sense,
one per sub-sense, shared background latents), for the layout + cluster path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vista_tui.mapdata import SparseCodes

NOISE = -1
"""Planted label of the background points."""


@dataclass(frozen=True)
class PlantedSense:
    """One planted sense: where its island sits, how many contexts, how many sub-senses."""

    centre: tuple[float, float]
    size: int
    sub_senses: int = 1


SENSES = (
    # Four senses close together (0.2 apart), two of them with three sub-senses each ...
    PlantedSense((0.10, 0.50), 330, sub_senses=3),
    PlantedSense((0.30, 0.50), 150),
    PlantedSense((0.50, 0.50), 330, sub_senses=3),
    PlantedSense((0.70, 0.50), 150),
    # ... and two farther out (0.35 and 0.6 beyond), so the condensed tree sheds them first.
    PlantedSense((1.05, 0.50), 90),
    PlantedSense((1.65, 0.50), 90),
)


@dataclass(frozen=True)
class Planted:
    """Contexts with their planted sense and sub-sense (NOISE for the background)."""

    context_ids: list[str]
    activations: np.ndarray
    sense: np.ndarray
    sub_sense: np.ndarray
    """Unique across senses: sense * 10 + sub-sense index; NOISE for the background."""


@dataclass(frozen=True)
class PlantedLayout(Planted):
    """A planted structure as 2-D points."""

    xy: np.ndarray


@dataclass(frozen=True)
class PlantedCodes(Planted):
    """A planted structure as SAE-like sparse codes."""

    codes: SparseCodes


def _labels(senses: tuple[PlantedSense, ...], n_noise: int) -> tuple[np.ndarray, np.ndarray]:
    sense: list[int] = []
    sub_sense: list[int] = []
    for index, planted in enumerate(senses):
        for row in range(planted.size):
            sense.append(index)
            sub_sense.append(index * 10 + row % planted.sub_senses)
    sense += [NOISE] * n_noise
    sub_sense += [NOISE] * n_noise
    return np.asarray(sense), np.asarray(sub_sense)


def planted_layout(seed: int = 0, noise_share: float = 0.04) -> PlantedLayout:
    """Six planted senses (two with three sub-senses) as layout-like points; see the module doc."""
    rng = np.random.default_rng(seed)
    n_senses = sum(planted.size for planted in SENSES)
    n_noise = round(noise_share * n_senses)
    sense, sub_sense = _labels(SENSES, n_noise)
    xy = np.empty((len(sense), 2))
    for index, planted in enumerate(SENSES):
        rows = np.flatnonzero(sense == index)
        if planted.sub_senses == 1:
            xy[rows] = planted.centre + _in_disk(rng, len(rows), 0.035)
            continue
        # Sub-islands on a small circle: 0.043 apart, a fifth of the distance to the next sense.
        angles = 2 * np.pi * (sub_sense[rows] % 10) / planted.sub_senses
        offsets = 0.025 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        xy[rows] = planted.centre + offsets + _in_disk(rng, len(rows), 0.01)
    # The background lies off the row of senses: scattered points between two islands would
    # bridge them at random distances and blur which senses split first.
    background = rng.uniform((0.0, 0.0), (1.75, 0.4), size=(n_noise, 2))
    background[:, 1] += np.where(background[:, 1] < 0.2, 0.0, 0.6)
    xy[sense == NOISE] = background
    activations = rng.gamma(4.0, 1.0, size=len(sense))
    ids = [f"planted-{seed}-{row:05d}" for row in range(len(sense))]
    return PlantedLayout(ids, activations, sense, sub_sense, xy)


def _in_disk(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    """n points uniform in a disk: islands of even density with a sharp edge, as UMAP draws them."""
    angle = rng.uniform(0, 2 * np.pi, n)
    distance = radius * np.sqrt(rng.uniform(0, 1, n))
    return np.stack([distance * np.cos(angle), distance * np.sin(angle)], axis=1)


def gaussian_blob(n: int = 1500, seed: int = 0) -> PlantedLayout:
    """One dense cluster: n points of a single isotropic Gaussian (every sense label 0)."""
    rng = np.random.default_rng(seed)
    xy = rng.normal(0.5, 0.1, size=(n, 2))
    ids = [f"blob-{seed}-{row:05d}" for row in range(n)]
    zeros = np.zeros(n, dtype=np.int64)
    return PlantedLayout(ids, rng.gamma(4.0, 1.0, size=n), zeros, zeros, xy)


def planted_codes(seed: int = 0, n_latents: int = 512) -> PlantedCodes:
    """The planted senses as SAE-like codes: cosine ~0 across senses, moderate across sub-senses."""
    rng = np.random.default_rng(seed)
    sense, sub_sense = _labels(SENSES, 0)
    # Latent groups: 16 per sense, 12 per sub-sense, the rest a shared background pool.
    sense_latents = [16 * index + np.arange(16) for index in range(len(SENSES))]
    next_free = 16 * len(SENSES)
    sub_latents: dict[int, np.ndarray] = {}
    for label in np.unique(sub_sense):
        sub_latents[int(label)] = next_free + np.arange(12)
        next_free += 12
    background = np.arange(next_free, n_latents)
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for index, label in zip(sense, sub_sense, strict=True):
        fired = {
            int(latent): float(rng.exponential(1.0) + 1.0) for latent in rng.choice(sense_latents[index], 8, False)
        }
        if SENSES[index].sub_senses > 1:
            for latent in rng.choice(sub_latents[int(label)], 6, replace=False):
                fired[int(latent)] = float(rng.exponential(1.0) + 1.0)
        for latent in rng.choice(background, 3, replace=False):
            fired[int(latent)] = float(rng.exponential(0.1))
        order = sorted(fired)
        indices.append(np.asarray(order, dtype=np.int32))
        values.append(np.asarray([fired[latent] for latent in order], dtype=np.float32))
        indptr.append(indptr[-1] + len(order))
    codes = SparseCodes(np.asarray(indptr, np.int64), np.concatenate(indices), np.concatenate(values), n_latents)
    activations = rng.uniform(2.5, 3.0, size=len(sense)).astype(np.float32)
    ids = [f"planted-codes-{seed}-{row:05d}" for row in range(len(sense))]
    return PlantedCodes(ids, activations, sense, sub_sense, codes)
