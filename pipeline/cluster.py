"""Cluster step: HDBSCAN on the 2-D layout, turned into a tree of nested clusters.

Everything is read off hdbscan's condensed tree, in which a cluster is born when its parent
splits, sheds points as the density threshold lambda (= 1 / distance) rises, and dies by
splitting into two or more clusters or by running out of points.

* Root (depth 0, kind "root"): every context.
* The flat clusters: the excess-of-mass (EOM) selection hdbscan itself makes (clusters whose
  stability beats the summed stability of the best selection below them).
* Above them: condensed-tree clusters that hold several selected clusters, when they persist,
  i.e. their split comes at lambda at least 1 / (1 - min_persistence) times their birth lambda
  (so three equally far blobs make three children, not a spurious pair plus a single).
* Below them: recursively, the EOM selection among each cluster's proper descendants.
* Lifting. A real layout makes the condensed tree a chain: at each level a small cluster
  splits off and one child keeps most of the points, so the senses used to sit under two or
  three pass-through levels. When a node's largest child holds more than `lift_share` of its
  members (or is its only child), that child's children take its place, recursively; the
  clusters shed along the chain stay as siblings. So the root's children are the real
  senses, and `max_depth` counts real splits, not pass-throughs. A dominant cluster whose own
  split is not real (below) stays whole, next to the satellites it shed.
* No invented split. A split needs two clusters of which at least one lasts: half its members
  are still in it at (1 - min_persistence) times its birth distance. Density noise carves
  fragments out of one dense mass (a single Gaussian blob, or the dense core of a UMAP
  island) that lose their points almost as soon as they are born; a node whose split holds
  only such fragments has no children. A single Gaussian blob gives the root alone.
* Under every node that has children, its members in none of them form one child of kind
  "noise". No context is dropped: each sits in exactly one leaf.

Depth stops at `max_depth`. Node ids hash the sorted member context ids (`node_id_for`), so a
lifted cluster keeps the id it had deeper in the chain. HDBSCAN runs on the rows in
context-id order, so the tree and its ids do not depend on the row order of the input; the fit
itself is deterministic (exact minimum spanning tree).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import ClusterNode, node_id_for
from vista_tui.mapdata.schema import NodeKind

STEP = "cluster"
VERSION = 2
DISTRIBUTIONS = ("numpy", "hdbscan", "scikit-learn")
"""Packages whose versions shape the tree, in the order the manifest records them."""


@dataclass(frozen=True)
class ClusterConfig:
    """Parameters of the cluster tree."""

    min_cluster_size: int | None = None
    """HDBSCAN's smallest cluster; None: max(5, N // 50)."""
    min_samples: int | None = None
    """HDBSCAN's density smoothing; None: as min_cluster_size (hdbscan's default)."""
    max_depth: int = 3
    """Deepest level of the tree (root = 0); nodes at this depth get no children. Levels are real
    splits: the pass-through clusters of a chain are lifted and cost no depth."""
    min_persistence: float = 0.25
    """A cluster above the flat clusters is kept only if its split distance is at most
    (1 - min_persistence) times its birth distance; else its children move up to its parent.
    A node's split is shown only if one of its clusters lasts: half its members stay in it up
    to that fraction of its birth distance."""
    lift_share: float = 0.75
    """A child holding more than this share of its parent's members is a pass-through: its own
    children are lifted into the parent, recursively. 1.0 lifts only a child that holds them all."""
    seed: int = 0
    """Recorded for provenance: the clustering itself is deterministic and uses no randomness."""

    def __post_init__(self) -> None:
        if self.min_cluster_size is not None and self.min_cluster_size < 2:
            raise ValueError(f"min_cluster_size must be >= 2 or None, got {self.min_cluster_size!r}")
        if self.min_samples is not None and self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1 or None, got {self.min_samples!r}")
        if self.max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {self.max_depth!r}")
        if not (math.isfinite(self.min_persistence) and 0 <= self.min_persistence < 1):
            raise ValueError(f"min_persistence must be in [0, 1), got {self.min_persistence!r}")
        if not (math.isfinite(self.lift_share) and 0.5 <= self.lift_share <= 1):
            raise ValueError(f"lift_share must be in [0.5, 1], got {self.lift_share!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")

    def cluster_size_for(self, n: int) -> int:
        """The min_cluster_size used for n contexts."""
        return self.min_cluster_size if self.min_cluster_size is not None else max(5, n // 50)


Config = ClusterConfig
"""The step's config under the name every step module exports."""


@dataclass
class ClusterTree:
    """The nodes (parents before children, root first) and each context's leaf."""

    nodes: list[ClusterNode]
    leaf_of: list[str]
    """For each context row, the id of the deepest node holding it."""
    _by_id: dict[str, ClusterNode] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id = {node.node_id: node for node in self.nodes}

    @property
    def root(self) -> ClusterNode:
        """The node holding every context."""
        return self.nodes[0]

    def node(self, node_id: str) -> ClusterNode:
        """The node with that id (KeyError if none)."""
        return self._by_id[node_id]

    def children(self, node_id: str) -> list[ClusterNode]:
        """The node's children, in tree order."""
        return [node for node in self.nodes if node.parent_id == node_id]

    @property
    def depth(self) -> int:
        """The deepest level of the tree (root = 0)."""
        return max(node.depth for node in self.nodes)


@dataclass
class _Condensed:
    """hdbscan's condensed tree, indexed by cluster id (rows are in canonical order)."""

    root: int
    children: dict[int, list[int]]
    birth: dict[int, float]
    split: dict[int, float]
    """Lambda at which a cluster splits into its child clusters (absent for leaf clusters)."""
    stability: dict[int, float]
    members: dict[int, np.ndarray]
    """Canonical row indices in the cluster's subtree (sorted)."""
    exit_lambda: np.ndarray
    """Per canonical row, the lambda at which the point leaves the tree (falls out as noise)."""

    def lasting(self, cluster: int, min_persistence: float) -> bool:
        """Whether half the cluster's members stay in it to (1 - min_persistence) times its birth distance.

        A fragment that density noise carves out of one dense mass loses its points almost as
        soon as it is born; a cluster that split off for real keeps them well past its birth.
        """
        return self.birth[cluster] <= (1.0 - min_persistence) * float(
            np.median(self.exit_lambda[self.members[cluster]])
        )


def _condense(raw: np.ndarray, n_points: int) -> _Condensed:
    parent = raw["parent"].astype(np.int64)
    child = raw["child"].astype(np.int64)
    size = raw["child_size"].astype(np.float64)
    lam = raw["lambda_val"].astype(np.float64)
    # Duplicate positions give infinite lambdas; cap them so stabilities stay finite.
    finite = lam[np.isfinite(lam)]
    lam = np.where(np.isfinite(lam), lam, finite.max() if len(finite) else 1.0)

    root = int(parent.min()) if len(parent) else n_points
    is_cluster = child >= n_points
    children: dict[int, list[int]] = {root: []}
    birth: dict[int, float] = {root: 0.0}
    split: dict[int, float] = {}
    for p, c, lv in zip(parent[is_cluster], child[is_cluster], lam[is_cluster], strict=True):
        children.setdefault(int(p), []).append(int(c))
        children.setdefault(int(c), [])
        birth[int(c)] = float(lv)
        split[int(p)] = float(lv)
    stability = dict.fromkeys(children, 0.0)
    births = np.array([birth[int(p)] for p in parent])
    for p, gain in zip(parent, (lam - births) * size, strict=True):
        stability[int(p)] += float(gain)

    exit_lambda = np.zeros(n_points)
    exit_lambda[child[~is_cluster]] = lam[~is_cluster]
    direct: dict[int, list[int]] = {}
    for p, c in zip(parent[~is_cluster], child[~is_cluster], strict=True):
        direct.setdefault(int(p), []).append(int(c))
    members: dict[int, np.ndarray] = {}
    # Child clusters are numbered after their parents: fill from the highest id down.
    for cluster in sorted(children, reverse=True):
        parts = [np.asarray(direct.get(cluster, []), dtype=np.int64)]
        parts += [members[c] for c in children[cluster]]
        members[cluster] = np.sort(np.concatenate(parts))
    for cluster in children:
        children[cluster].sort()
    return _Condensed(root, children, birth, split, stability, members, exit_lambda)


def _eom(tree: _Condensed) -> tuple[dict[int, list[int]], set[int]]:
    """best[c]: the EOM selection within c's subtree (c included); and the flat selection."""
    best: dict[int, list[int]] = {}
    best_stability: dict[int, float] = {}
    for cluster in sorted(tree.children, reverse=True):
        below = [c for child in tree.children[cluster] for c in best[child]]
        below_stability = sum(best_stability[child] for child in tree.children[cluster])
        # As hdbscan: the parent wins ties.
        if not tree.children[cluster] or tree.stability[cluster] >= below_stability:
            best[cluster], best_stability[cluster] = [cluster], tree.stability[cluster]
        else:
            best[cluster], best_stability[cluster] = below, below_stability
    flat = {c for child in tree.children[tree.root] for c in best[child]}
    return best, flat


def _hdbscan_condensed(xy: np.ndarray, min_cluster_size: int, min_samples: int) -> np.ndarray:
    # hdbscan pulls in sklearn and compiled extensions: imported only when clustering runs.
    import hdbscan

    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        approx_min_span_tree=False,  # exact MST: the tree must not depend on traversal order
        core_dist_n_jobs=1,
    )
    clusterer.fit(xy)
    return clusterer.condensed_tree_.to_numpy()


def run(
    cfg: ClusterConfig,
    xy: np.ndarray,
    activations: np.ndarray,
    context_ids: list[str] | np.ndarray,
    *,
    progress: Progress = no_progress,
) -> ClusterTree:
    """The cluster tree of layout `xy` (N x 2); see the module doc for its shape."""
    points = np.asarray(xy, dtype=np.float64)
    activation = np.asarray(activations, dtype=np.float64).reshape(-1)
    ids = [str(c) for c in context_ids]
    n = len(ids)
    if n == 0:
        raise ValueError("no contexts to cluster")
    if points.shape != (n, 2):
        raise ValueError(f"xy must be {n} x 2 (one row per context id), got shape {points.shape}")
    if activation.shape != (n,):
        raise ValueError(f"activations must have {n} entries, got {activation.shape[0]}")
    if not (np.all(np.isfinite(points)) and np.all(np.isfinite(activation))):
        raise ValueError("xy and activations must be finite")

    # Canonical order: the same contexts give the same hdbscan input whatever their row order.
    canonical = np.array(sorted(range(n), key=lambda r: (ids[r], points[r, 0], points[r, 1])), dtype=np.int64)
    min_cluster_size = cfg.cluster_size_for(n)
    min_samples = min(cfg.min_samples if cfg.min_samples is not None else min_cluster_size, n - 1)
    progress(0, 2, "hdbscan")
    if n >= 2 * min_cluster_size and min_samples >= 1:
        condensed = _condense(_hdbscan_condensed(points[canonical], min_cluster_size, min_samples), n)
    else:  # too few contexts for two clusters: the root alone
        condensed = _Condensed(n, {n: []}, {n: 0.0}, {}, {n: 0.0}, {n: np.arange(n)}, np.zeros(n))
    progress(1, 2, "tree")
    best, flat = _eom(condensed)
    parent_of = {c: p for p, kids in condensed.children.items() for c in kids}
    above: set[int] = set()
    for cluster in flat:
        while cluster in parent_of and parent_of[cluster] != condensed.root:
            cluster = parent_of[cluster]
            above.add(cluster)

    def persistent(cluster: int) -> bool:
        return condensed.birth[cluster] <= (1.0 - cfg.min_persistence) * condensed.split[cluster]

    def lift(cluster: int) -> list[int]:
        """Display clusters for a condensed child of a node above the flat clusters."""
        if cluster in flat or (cluster in above and persistent(cluster)):
            return [cluster]
        return [c for child in condensed.children[cluster] for c in lift(child)]

    def display_children(cluster: int) -> list[int]:
        if cluster == condensed.root or cluster in above:
            return [c for child in condensed.children[cluster] for c in lift(child)]
        return [c for child in condensed.children[cluster] for c in best[child]]

    nodes: list[ClusterNode] = []
    leaf_of = [""] * n

    def make_node(rows: np.ndarray, kind: NodeKind, parent_id: str | None, depth: int, stability: float) -> ClusterNode:
        rows = np.sort(rows).astype(np.int32)
        member_xy = points[rows]
        member_activation = activation[rows]
        return ClusterNode(
            node_id=node_id_for([ids[r] for r in rows], kind),
            parent_id=parent_id,
            depth=depth,
            kind=kind,
            members=rows,
            centroid=(float(member_xy[:, 0].mean()), float(member_xy[:, 1].mean())),
            bbox=(
                float(member_xy[:, 0].min()),
                float(member_xy[:, 1].min()),
                float(member_xy[:, 0].max()),
                float(member_xy[:, 1].max()),
            ),
            mean_activation=float(member_activation.mean()),
            max_activation=float(member_activation.max()),
            stability=stability,
        )

    def cluster_node(cluster: int, kind: NodeKind, parent_id: str | None, depth: int) -> ClusterNode:
        stability = 0.0 if kind == "root" else condensed.stability[cluster]
        return make_node(canonical[condensed.members[cluster]], kind, parent_id, depth, stability)

    def size(cluster: int) -> int:
        return len(condensed.members[cluster])

    def splits(kids: list[int]) -> bool:
        """Whether these clusters are a real split. One cluster alone is not, nor are fragments
        that density noise carves out of a single dense mass: none of them lasts."""
        return len(kids) >= 2 and any(condensed.lasting(c, cfg.min_persistence) for c in kids)

    def split_of(cluster: int) -> list[int]:
        """The condensed clusters shown as the children of `cluster` (see the module doc)."""
        kids = display_children(cluster)
        while kids:
            largest = max(kids, key=lambda c: (size(c), -c))
            if len(kids) >= 2 and size(largest) <= cfg.lift_share * size(cluster):
                break  # a real split
            # A lone or dominant child is the node again, minus what the chain shed on the way:
            # look through it, keeping the clusters shed so far as siblings of its own.
            below = display_children(largest)
            if not splits(below):  # a dense core: it stays whole, next to any satellites
                break
            kids = [c for c in kids if c != largest] + below
        return kids if splits(kids) else []

    def add(cluster: int, node: ClusterNode) -> None:
        nodes.append(node)
        kids = split_of(cluster) if node.depth < cfg.max_depth else []
        if not kids:
            for row in node.members:
                leaf_of[row] = node.node_id
            return
        child_nodes = [(cluster_node(c, "cluster", node.node_id, node.depth + 1), c) for c in kids]
        child_nodes.sort(key=lambda pair: (-pair[0].size, pair[0].node_id))
        for child_node, child in child_nodes:
            add(child, child_node)
        covered = np.concatenate([condensed.members[c] for c in kids])
        rest = np.setdiff1d(condensed.members[cluster], covered)
        if len(rest):
            noise = make_node(canonical[rest], "noise", node.node_id, node.depth + 1, 0.0)
            nodes.append(noise)
            for row in noise.members:
                leaf_of[row] = noise.node_id

    add(condensed.root, cluster_node(condensed.root, "root", None, 0))
    progress(2, 2, "done")
    return ClusterTree(nodes=nodes, leaf_of=leaf_of)
