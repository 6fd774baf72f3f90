"""Typed records of the on-disk map format (see cache/README.md).

The standard library at import (numpy only inside the functions that compute with arrays):
the TUI reads manifests with this module before numpy is loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1
"""Version of the on-disk map format written by this code; readers refuse others."""

NodeKind = Literal["root", "cluster", "noise"]


def node_id_for(member_context_ids: list[str] | np.ndarray, kind: NodeKind = "cluster") -> str:
    """Stable node id: a hash of the node's sorted member context ids.

    The same members give the same id across rebuilds, so annotations keyed by it survive.
    Noise nodes hash with a prefix so that they never share an id with a cluster.
    """
    digest = hashlib.sha256()
    if kind == "noise":
        digest.update(b"noise\n")
    for context_id in sorted(str(c) for c in member_context_ids):
        digest.update(context_id.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def context_id_for(source: str, doc_id: str, token_position: int) -> str:
    """Stable context id: where in the corpus the focus token sits."""
    key = f"{source}\x00{doc_id}\x00{token_position}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True)
class StepRecord:
    """How one pipeline step made its output: enough to redo it and to know when to."""

    name: str
    step_id: str
    """Hash of the step's parameters, code version and upstream step id."""
    params: dict[str, Any]
    versions: dict[str, str]
    """Package versions that shaped the output (python, numpy, umap-learn, ...)."""
    upstream: str | None
    seconds: float = 0.0
    finished: str = ""
    """ISO-8601 UTC time the step finished."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StepRecord:
        return cls(
            name=str(raw["name"]),
            step_id=str(raw["step_id"]),
            params=dict(raw.get("params", {})),
            versions={str(k): str(v) for k, v in dict(raw.get("versions", {})).items()},
            upstream=None if raw.get("upstream") is None else str(raw["upstream"]),
            seconds=float(raw.get("seconds", 0.0)),
            finished=str(raw.get("finished", "")),
        )


@dataclass(frozen=True)
class Provenance:
    """What the map is of: which model, hook, SAE, latent and corpus."""

    model: str
    hook: str
    sae: str
    latent: int
    corpus: str
    n_contexts: int
    n_tokens_seen: int = 0
    d_sae: int = 0
    d_model: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Provenance:
        return cls(
            model=str(raw["model"]),
            hook=str(raw["hook"]),
            sae=str(raw["sae"]),
            latent=int(raw["latent"]),
            corpus=str(raw["corpus"]),
            n_contexts=int(raw["n_contexts"]),
            n_tokens_seen=int(raw.get("n_tokens_seen", 0)),
            d_sae=int(raw.get("d_sae", 0)),
            d_model=int(raw.get("d_model", 0)),
        )


@dataclass(frozen=True)
class FileEntry:
    """A data file of the map, as the manifest records it; the size detects torn writes."""

    name: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """The map's table of contents: written last, so a map without one is not a map."""

    map_id: str
    provenance: Provenance
    steps: dict[str, StepRecord]
    files: dict[str, FileEntry]
    created: str
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "map_id": self.map_id,
            "created": self.created,
            "provenance": asdict(self.provenance),
            "steps": {name: asdict(step) for name, step in self.steps.items()},
            "files": {key: asdict(entry) for key, entry in self.files.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        return cls(
            schema_version=int(raw["schema_version"]),
            map_id=str(raw["map_id"]),
            created=str(raw.get("created", "")),
            provenance=Provenance.from_dict(raw["provenance"]),
            steps={str(k): StepRecord.from_dict(v) for k, v in dict(raw.get("steps", {})).items()},
            files={
                str(k): FileEntry(name=str(v["name"]), size=int(v["size"]))
                for k, v in dict(raw.get("files", {})).items()
            },
        )


@dataclass(frozen=True)
class Context:
    """One input that excites the latent: a window of tokens around the focus token."""

    context_id: str
    doc_id: str
    text: str
    """The window as text (tokens joined the way the tokenizer decodes them)."""
    tokens: list[str]
    focus: int
    """Index of the focus token in `tokens`."""
    activation: float
    """The latent's activation on the focus token."""
    token_activations: list[float]
    """The latent's activation on every token of the window (for shading)."""
    x: float = float("nan")
    y: float = float("nan")
    leaf_node: str = ""

    @property
    def focus_token(self) -> str:
        return self.tokens[self.focus]


@dataclass(frozen=True)
class FocusToken:
    """One focus token of a node: how many of its contexts fire on it, their activation, its distinctiveness."""

    token: str
    """The display token as the contexts hold it (a leading space included), cut to 80 characters."""
    count: int
    """How many of the node's contexts have this focus token."""
    mass: float
    """Their summed activation (NaN when the step was given no activations)."""
    score: float
    """Class-based TF-IDF against the node's siblings (its share of the node when it has none)."""


@dataclass
class NodeLabels:
    """What a node is called: offline keywords, focus tokens, the visual prompt, and (later) an LLM's reading."""

    keywords: list[str] = field(default_factory=list)
    """Window keywords: class-based TF-IDF of the contexts' text against the siblings."""
    focus_tokens: list[FocusToken] = field(default_factory=list)
    """The node's top focus tokens by count, by activation mass and by score (their union), most
    frequent first; empty in maps built before they were recorded."""
    visual_prompt: str = ""
    llm_label: str = ""
    llm_explanation: str = ""
    label_status: str = ""
    """Empty when no LLM labelling ran; 'ok' or 'failed: <reason>' after."""
    agreement: float = float("nan")
    """Similarity between the readings; NaN until computed."""


@dataclass
class ClusterNode:
    """A node of the cluster tree: the latent (root), a cluster, or the noise of its parent."""

    node_id: str
    parent_id: str | None
    depth: int
    kind: NodeKind
    members: np.ndarray
    """Sorted row indices into the map's contexts table (int32)."""
    centroid: tuple[float, float]
    bbox: tuple[float, float, float, float]
    """(x_min, y_min, x_max, y_max) of the members in the layout."""
    mean_activation: float
    max_activation: float
    stability: float = 0.0
    """hdbscan's stability of the cluster (0 for root and noise)."""
    labels: NodeLabels = field(default_factory=NodeLabels)

    @property
    def size(self) -> int:
        return len(self.members)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ClusterNode:
        """One row of the tree file (as `pa.Table.to_pylist` gives it); a column a map lacks takes its default."""
        import numpy as np

        bbox = row["bbox"] or [float("nan")] * 4
        agreement = row.get("agreement")
        return cls(
            node_id=row["node_id"],
            parent_id=row["parent_id"],
            depth=int(row["depth"]),
            kind=row["kind"],
            members=np.asarray(row["members"], dtype=np.int32),
            centroid=(float(row["centroid_x"]), float(row["centroid_y"])),
            bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
            mean_activation=float(row["mean_activation"]),
            max_activation=float(row["max_activation"]),
            stability=float(row.get("stability") or 0.0),
            labels=NodeLabels(
                keywords=list(row.get("keywords") or []),
                focus_tokens=[
                    FocusToken(
                        token=entry.get("token") or "",
                        count=int(entry.get("count") or 0),
                        mass=float("nan") if entry.get("mass") is None else float(entry["mass"]),
                        score=float(entry.get("score") or 0.0),
                    )
                    for entry in row.get("focus_tokens") or []  # none in a map written before them
                    if entry is not None
                ],
                visual_prompt=row.get("visual_prompt") or "",
                llm_label=row.get("llm_label") or "",
                llm_explanation=row.get("llm_explanation") or "",
                label_status=row.get("label_status") or "",
                agreement=float("nan") if agreement is None else float(agreement),
            ),
        )


@dataclass(frozen=True)
class FidelityCurve:
    """Mutual-kNN gain of the 2-D layout against the high-D VISTA distance."""

    n: int
    k: list[int]
    k_percent: list[float]
    m: list[float]
    """Mean fraction of shared k-neighbours."""
    gain: list[float]
    """m(k) - k/(n-1): what the layout keeps beyond a random one."""

    @property
    def argmax(self) -> int:
        """Index into the sweep of the highest gain."""
        import numpy as np

        return int(np.argmax(self.gain)) if self.gain else 0

    @property
    def best_k(self) -> int:
        return self.k[self.argmax] if self.k else 0

    @property
    def best_percent(self) -> float:
        return self.k_percent[self.argmax] if self.k_percent else 0.0

    @property
    def best_gain(self) -> float:
        return self.gain[self.argmax] if self.gain else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["argmax"] = {"k": self.best_k, "k_percent": self.best_percent, "gain": self.best_gain}
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FidelityCurve:
        return cls(
            n=int(raw["n"]),
            k=[int(v) for v in raw["k"]],
            k_percent=[float(v) for v in raw["k_percent"]],
            m=[float(v) for v in raw["m"]],
            gain=[float(v) for v in raw["gain"]],
        )


@dataclass(frozen=True)
class SparseCodes:
    """SAE codes of the contexts' focus tokens, row-compressed (CSR), as stored in codes.npz."""

    indptr: np.ndarray
    """int64, length n_rows + 1."""
    indices: np.ndarray
    """int32 latent indices."""
    values: np.ndarray
    """float32 (float16 on disk) code values."""
    n_latents: int

    @property
    def n_rows(self) -> int:
        return int(len(self.indptr) - 1)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[lo:hi], self.values[lo:hi]

    def take(self, rows: np.ndarray) -> SparseCodes:
        """A new CSR holding only `rows`, in that order."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        gather = (
            np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
            if len(rows)
            else np.zeros(0, np.int64)
        )
        return SparseCodes(indptr, self.indices[gather], self.values[gather], self.n_latents)

    def to_dense(self) -> np.ndarray:
        import numpy as np

        dense = np.zeros((self.n_rows, self.n_latents), dtype=np.float32)
        row_of = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        dense[row_of, self.indices] = self.values
        return dense
