"""Deterministic maps written straight through the map writer: for TUI tests, snapshots and benchmarks.

The contexts are made-up but shaped like real ones: a tree of clusters (each with its own
vocabulary) whose members sit together on the layout, activations highest first, token
windows with a focus token. `hostile=True` puts escape sequences, control characters,
bidi overrides, a 100 kB token and invalid UTF-8 into some contexts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from vista_tui.mapdata import (
    ClusterNode,
    FidelityCurve,
    MapWriter,
    NodeLabels,
    Provenance,
    SparseCodes,
    StepRecord,
    context_id_for,
    contexts_table,
    node_id_for,
)

SENSES = {
    "muscle": ["muscle", "biceps", "tendon", "flex", "strength", "fibre"],
    "mustard": ["mustard", "seed", "sauce", "yellow", "spicy", "condiment"],
    "music": ["music", "melody", "rhythm", "song", "chord", "tempo"],
    "museum": ["museum", "gallery", "exhibit", "curator", "painting", "artefact"],
}
SUBSENSES = {
    "muscle": ["anatomy", "training"],
    "mustard": ["cooking", "plants"],
    "music": ["classical", "jazz", "folk"],
    "museum": ["history", "modern"],
}
READINGS = {
    "root": (
        "Words that begin with mus-, across unrelated senses.",
        "a collage of a flexed arm, a jar of mustard and a violin",
        0.58,
    ),
    "muscle": (
        "Body tissue that contracts: anatomy and strength training.",
        "an anatomical drawing of a flexed biceps",
        0.71,
    ),
    "mustard": (
        "The yellow condiment and the plant its seeds come from.",
        "a jar of yellow mustard beside mustard seeds",
        0.66,
    ),
    "music": ("Songs, melodies and the playing of instruments.", "a jazz quartet playing on a dim stage", 0.34),
    "museum": (
        "Galleries, exhibits and the people who curate them.",
        "a quiet museum hall with paintings on white walls",
        0.49,
    ),
}
"""With `agreement=True`: each labelled node's LLM explanation, LLM visual prompt and agreement score."""
FILLER = ["the", "a", "of", "and", "in", "with", "for", "was", "is", "to", "on", "very", "that"]

HOSTILE_TEXTS = [
    "\x1b]52;c;cm0gLXJmIH4=\x07clipboard write",
    "\x1b]0;owned title\x07title change",
    "\x1b[2J\x1b[31mclear and red",
    "nul\x00and bell\x07and backspace\x08",
    "right-to-left \u202eexe.txt override",
    "x" * 100_000,
]
INVALID_UTF8 = b"bad bytes \xff\xfe\xc3( here"


def _window(rng: np.random.Generator, words: list[str], width: int) -> tuple[list[str], int]:
    tokens = [" " + str(rng.choice(FILLER if rng.random() < 0.5 else words)) for _ in range(width)]
    focus = width // 2
    tokens[focus] = " " + str(rng.choice(words[:2]))
    return tokens, focus


def build_synthetic_map(
    map_dir: Path,
    n: int = 240,
    seed: int = 0,
    latent: int = 42,
    hostile: bool = False,
    width: int = 13,
    llm_labels: bool = False,
    agreement: bool = False,
    sae: str = "synthetic-sae",
    d_sae: int = 512,
) -> Path:
    """Write a map of `n` contexts to `map_dir` (deterministic for a given seed) and return it.

    `llm_labels` names the root and every other top-level cluster; `agreement` (which implies it)
    also gives those nodes an explanation, an LLM visual prompt, status ok and an agreement score,
    as `vista label` and its agreement step leave them.
    """
    llm_labels = llm_labels or agreement
    rng = np.random.default_rng(seed)
    senses = list(SENSES)
    leaves = [(sense, sub) for sense in senses for sub in SUBSENSES[sense]]
    sense_centres = {
        s: np.array([np.cos(a), np.sin(a)]) * 0.3 + 0.5
        for s, a in zip(senses, np.linspace(0, 2 * np.pi, len(senses), endpoint=False), strict=True)
    }
    leaf_of_row = rng.integers(0, len(leaves) + 1, size=n)  # the last index is noise
    xy = np.empty((n, 2), dtype=np.float32)
    tokens: list[list[str]] = []
    focus = np.empty(n, dtype=np.int32)
    for row, leaf in enumerate(leaf_of_row):
        if leaf == len(leaves):
            xy[row] = rng.random(2)
            window, f = _window(rng, [*FILLER, "mus"], width)
        else:
            sense, sub = leaves[leaf]
            k = SUBSENSES[sense].index(sub)
            centre = sense_centres[sense] + 0.06 * np.array([np.cos(k * 2.1), np.sin(k * 2.1)])
            xy[row] = centre + rng.normal(0, 0.015, 2)
            window, f = _window(rng, SENSES[sense] + [sub], width)
        tokens.append(window)
        focus[row] = f
    activations = np.sort(rng.gamma(3.0, 1.0, size=n).astype(np.float32))[::-1]
    # Rows are stored highest activation first, as the harvest writes them.
    token_acts = [
        [float(activations[i]) if j == focus[i] else float(max(0.0, rng.normal(0.3, 0.3))) for j in range(width)]
        for i in range(n)
    ]
    texts = ["".join(t) for t in tokens]
    if hostile:
        for i, text in enumerate(HOSTILE_TEXTS):
            row = 1 + 3 * i
            tokens[row] = [" hostile", " " + text, " end"]
            focus[row] = 1
            token_acts[row] = [0.1, float(activations[row]), 0.1]
            texts[row] = "".join(tokens[row])
    ids = [context_id_for("synthetic", f"doc{i}", i) for i in range(n)]
    table = contexts_table(
        context_ids=ids,
        doc_ids=[f"synthetic/doc{i}" for i in range(n)],
        texts=texts,
        tokens=tokens,
        focus=focus,
        activations=activations,
        token_activations=token_acts,
        xy=xy,
    )
    if hostile:
        table = _with_invalid_utf8(table, row=0)

    def make_node(
        members: np.ndarray,
        parent: str | None,
        depth: int,
        kind: str,
        keywords: list[str],
        label: str = "",
        reading: str = "",
    ) -> ClusterNode:
        members = np.sort(members).astype(np.int32)
        pts = xy[members]
        explanation, visual_prompt, score = READINGS[reading] if agreement and label else ("", "", float("nan"))
        labels = NodeLabels(
            keywords=keywords,
            visual_prompt=visual_prompt or (f"an illustration of {', '.join(keywords[:3])}" if keywords else ""),
            llm_label=label,
            llm_explanation=explanation,
            label_status="ok" if explanation else "",
            agreement=score,
        )
        return ClusterNode(
            node_id=node_id_for([ids[i] for i in members], kind),  # type: ignore[arg-type]
            parent_id=parent,
            depth=depth,
            kind=kind,  # type: ignore[arg-type]
            members=members,
            centroid=(float(pts[:, 0].mean()), float(pts[:, 1].mean())),
            bbox=(float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())),
            mean_activation=float(activations[members].mean()),
            max_activation=float(activations[members].max()),
            stability=0.0 if kind != "cluster" else float(len(members)) / n,
            labels=labels,
        )

    root = make_node(
        np.arange(n),
        None,
        0,
        "root",
        ["mus", "muscle", "music"],
        "words starting with mus-" if llm_labels else "",
        "root",
    )
    nodes = [root]
    for s, sense in enumerate(senses):
        leaf_ids = [i for i, (sn, _) in enumerate(leaves) if sn == sense]
        sense_members = np.flatnonzero(np.isin(leaf_of_row, leaf_ids))
        if len(sense_members) == 0:
            continue
        sense_node = make_node(
            sense_members,
            root.node_id,
            1,
            "cluster",
            SENSES[sense][:5],
            f"{sense} sense" if llm_labels and s % 2 == 0 else "",
            sense,
        )
        nodes.append(sense_node)
        for leaf in leaf_ids:
            members = np.flatnonzero(leaf_of_row == leaf)
            if len(members):
                sub = leaves[leaf][1]
                nodes.append(make_node(members, sense_node.node_id, 2, "cluster", [sub, *SENSES[sense][2:5]]))
    noise = np.flatnonzero(leaf_of_row == len(leaves))
    if len(noise):
        nodes.append(make_node(noise, root.node_id, 1, "noise", []))

    codes = SparseCodes(
        indptr=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        indices=np.column_stack([np.full(n, latent), leaf_of_row + 100]).astype(np.int32).ravel(),
        values=np.column_stack([activations, np.ones(n)]).astype(np.float32).ravel(),
        n_latents=512,
    )
    ks = sorted({max(1, round(n * p / 100)) for p in np.geomspace(0.25, 50, 24)})
    gain = [float(0.6 * np.exp(-((np.log(k) - np.log(n * 0.05)) ** 2) / 4)) for k in ks]
    curve = FidelityCurve(
        n=n,
        k=ks,
        k_percent=[100 * k / n for k in ks],
        m=[g + k / (n - 1) for g, k in zip(gain, ks, strict=True)],
        gain=gain,
    )
    writer = MapWriter(map_dir)
    writer.write_contexts(table)
    writer.write_codes(codes)
    writer.write_tree(nodes)
    writer.write_fidelity(curve)
    step = StepRecord(
        name="synthetic",
        step_id=f"seed{seed}",
        params={"n": n, "seed": seed},
        versions={},
        upstream=None,
        finished="2026-01-01T00:00:00+00:00",
    )
    writer.commit(
        map_id=map_dir.name,
        provenance=Provenance(
            model="synthetic-model",
            hook="layer.3",
            sae=sae,
            latent=latent,
            corpus="synthetic",
            n_contexts=n,
            n_tokens_seen=n * 50,
            d_sae=d_sae,
            d_model=64,
        ),
        steps={"synthetic": step},
    )
    _pin_created(map_dir)
    return map_dir


def _with_invalid_utf8(table: pa.Table, row: int) -> pa.Table:
    """Replace one row's text with bytes that are not UTF-8 (as a corrupt or foreign writer could)."""
    texts = [t.encode("utf-8") for t in table.column("text").to_pylist()]
    texts[row] = INVALID_UTF8
    offsets = np.zeros(len(texts) + 1, dtype=np.int32)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    # from_buffers skips UTF-8 validation, like a foreign writer that never checked.
    column = pa.Array.from_buffers(
        pa.string(), len(texts), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(texts))]
    )
    return table.set_column(table.schema.get_field_index("text"), "text", column)


def _pin_created(map_dir: Path) -> None:
    """Fixed build time, so snapshots of the picker do not change from run to run."""
    import json

    path = map_dir / "manifest.json"
    raw = json.loads(path.read_text())
    raw["created"] = "2026-11-01T12:00:00+00:00"
    path.write_text(json.dumps(raw, indent=2))
