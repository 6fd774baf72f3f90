"""A harvest on disk: per latent a contexts parquet, a codes npz (and its negatives), then harvest.json naming them.

`build` caches a harvest under the store, keyed by its step id, so that a rebuild with other
layout or cluster settings does not run the model again. harvest.json is written last, with
the sizes of the files it names: a folder without it is an unfinished harvest, and a file of
another size is a torn write; `load` refuses both with one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.harvest.config import HarvestError
from pipeline.harvest.result import ChildrenRun, HarvestResult, LatentChildren, LatentHarvest
from pipeline.models import first_line
from vista_tui.mapdata import (
    LatentStats,
    SparseCodes,
    StepRecord,
    atomic_write,
    atomic_write_json,
    negatives_schema,
)
from vista_tui.mapdata.reader import read_sparse_npz
from vista_tui.mapdata.writer import CONTEXTS_SCHEMA

HARVEST_FILE = "harvest.json"
DONE_FILE = HARVEST_FILE
"""Written last by `save`: a cache directory without it is an unfinished harvest."""
HARVEST_FORMAT = "vista-harvest"
HARVEST_FORMAT_VERSION = 1


def _contexts_name(latent: int) -> str:
    """File name of one latent's contexts in a harvest folder."""
    return f"latent_{latent}.contexts.parquet"


def _negatives_name(latent: int) -> str:
    """File name of one latent's non-activating windows in a harvest folder."""
    return f"latent_{latent}.negatives.parquet"


def _codes_name(latent: int) -> str:
    """File name of one latent's SAE codes in a harvest folder."""
    return f"latent_{latent}.codes.npz"


def _children_name(latent: int) -> str:
    """File name of one latent's firings of SAE B (`--also-sae`) in a harvest folder."""
    return f"latent_{latent}.children.npz"


def _write_sparse(handle: Any, codes: SparseCodes) -> None:
    """Sparse rows as a float32 CSR .npz."""
    np.savez(
        handle,
        indptr=codes.indptr.astype(np.int64),
        indices=codes.indices.astype(np.int32),
        values=codes.values.astype(np.float32),
        n_latents=np.int64(codes.n_latents),
    )


def save(result: HarvestResult, out_dir: Path | str) -> Path:
    """Write a harvest to `out_dir`: per latent a parquet + npz, then harvest.json (last: it names them all).

    Codes are kept in float32 (a map's codes.npz is float16): a harvest is an input to rebuilds.
    """
    out = Path(out_dir)
    latents = []
    for latent, harvest in result.latents.items():
        table = harvest.table.cast(CONTEXTS_SCHEMA)
        contexts_size = atomic_write(
            out / _contexts_name(latent),
            lambda handle, table=table: pq.write_table(table, handle, row_group_size=8192, compression="zstd"),
        )
        codes_size = atomic_write(
            out / _codes_name(latent), lambda handle, codes=harvest.codes: _write_sparse(handle, codes)
        )
        negatives = None
        if harvest.negatives is not None:
            drawn = harvest.negatives.cast(negatives_schema())
            size = atomic_write(
                out / _negatives_name(latent),
                lambda handle, drawn=drawn: pq.write_table(drawn, handle, compression="zstd"),
            )
            negatives = {"name": _negatives_name(latent), "size": size}
        children = None
        if harvest.children is not None:
            firings = harvest.children.firings
            size = atomic_write(
                out / _children_name(latent), lambda handle, firings=firings: _write_sparse(handle, firings)
            )
            children = {
                "neighbours": harvest.children.neighbours.tolist(),
                "cosines": harvest.children.cosines.tolist(),
                "firings": {"name": _children_name(latent), "size": size},
            }
        latents.append(
            {
                "latent": latent,
                "n_fired": harvest.n_fired,
                "n_contexts": harvest.n_contexts,
                "contexts": {"name": _contexts_name(latent), "size": contexts_size},
                "codes": {"name": _codes_name(latent), "size": codes_size},
                "stats": harvest.stats.to_dict() if harvest.stats is not None else None,
                "focus_positions": harvest.focus_positions.tolist(),
                "negatives": negatives,
                "children": children,
            }
        )
    atomic_write_json(
        out / HARVEST_FILE,
        {
            "format": HARVEST_FORMAT,
            "version": HARVEST_FORMAT_VERSION,
            "model": result.model,
            "hook": result.hook,
            "sae": result.sae,
            "corpus": result.corpus,
            "n_tokens_seen": result.n_tokens_seen,
            "n_documents": result.n_documents,
            "d_model": result.d_model,
            "d_sae": result.d_sae,
            "never_fired": result.never_fired,
            "latents": latents,
            "record": asdict(result.record),
            "children": asdict(result.children) if result.children is not None else None,
        },
    )
    return out


def load(out_dir: Path | str) -> HarvestResult:
    """Read a harvest written by `save`; HarvestError if it is missing, torn or of another version."""
    out = Path(out_dir)
    path = out / HARVEST_FILE
    if not path.is_file():
        raise HarvestError(f"no harvest at {out}: {HARVEST_FILE} is missing (an unfinished harvest?); harvest again")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HarvestError(f"{path} is not valid JSON ({error}); harvest again") from None
    if not isinstance(raw, dict) or raw.get("format") != HARVEST_FORMAT:
        raise HarvestError(f"{path} is not a VISTA harvest; harvest again")
    if raw.get("version") != HARVEST_FORMAT_VERSION:
        raise HarvestError(
            f"{path} is harvest format version {raw.get('version')!r}, this vista reads {HARVEST_FORMAT_VERSION};"
            " harvest again"
        )
    try:
        harvests: dict[int, LatentHarvest] = {}
        for entry in raw["latents"]:
            latent = int(entry["latent"])
            contexts = _checked(out, entry["contexts"])
            table = pq.read_table(contexts).cast(CONTEXTS_SCHEMA)
            codes = read_sparse_npz(_checked(out, entry["codes"]))
            children = entry.get("children")
            stats = entry.get("stats")
            negatives = entry.get("negatives")
            harvests[latent] = LatentHarvest(
                latent=latent,
                table=table,
                codes=codes,
                n_fired=int(entry["n_fired"]),
                stats=LatentStats.from_dict(stats) if stats is not None else None,
                focus_positions=np.asarray(entry.get("focus_positions", []), dtype=np.int64),
                negatives=pq.read_table(_checked(out, negatives)).cast(negatives_schema()) if negatives else None,
                children=LatentChildren(
                    neighbours=np.asarray(children["neighbours"], dtype=np.int64),
                    cosines=np.asarray(children["cosines"], dtype=np.float32),
                    firings=read_sparse_npz(_checked(out, children["firings"])),
                )
                if children
                else None,
            )
        return HarvestResult(
            latents=harvests,
            never_fired=[int(latent) for latent in raw["never_fired"]],
            n_tokens_seen=int(raw["n_tokens_seen"]),
            n_documents=int(raw.get("n_documents", 0)),
            d_model=int(raw["d_model"]),
            d_sae=int(raw["d_sae"]),
            model=str(raw["model"]),
            hook=str(raw["hook"]),
            sae=str(raw["sae"]),
            corpus=str(raw["corpus"]),
            record=StepRecord.from_dict(raw["record"]),
            children=ChildrenRun(**raw["children"]) if raw.get("children") else None,
        )
    except HarvestError:
        raise
    except (KeyError, TypeError, ValueError, OSError, pa.ArrowException) as error:
        raise HarvestError(f"harvest at {out} is unreadable ({first_line(error)}); harvest again") from None


def _checked(out: Path, entry: dict[str, Any]) -> Path:
    """The file a harvest.json entry names, HarvestError if it is missing or not the size written."""
    path = out / str(entry["name"])
    if not path.is_file():
        raise HarvestError(f"harvest at {out} is missing {entry['name']}; harvest again")
    size = path.stat().st_size
    if size != int(entry["size"]):
        raise HarvestError(
            f"{entry['name']} in harvest {out} is {size} bytes, harvest.json says {entry['size']} (torn write);"
            " harvest again"
        )
    return path
