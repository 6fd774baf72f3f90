"""Renders on disk: the job that defines an image, its cache key, where it lives, its sidecar.

A map keeps its renders in `<map>/renders/`: `<key>.png` and `<key>.json` (the sidecar, what
made the image), the image written first and the sidecar last, each atomically, so the
sidecar's presence marks a complete render. `render_key` is the one key of that cache, for
every writer and reader: the render worker behind the TUI and `vista render`, the pipeline's
render step, and the TUI looking for an image it can show without starting anything. The key
hashes the job's parameters, the renderer's version and the bytes of the map files a picture
depends on, so an image is rendered once and a map whose labels changed gets new images.
cache/README.md documents the folder, the key and every sidecar field.

The standard library only at import (numpy and pyarrow load only when a key needs the map's
root id), and no textual and no pipeline: the TUI, the CLI and the pipeline all import it.
`map_fingerprint` and `render_key` read and hash files; they are plain functions, safe to call
from any thread (the memo behind them has its own lock), and cheap once a map was hashed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypedDict

from vista_tui.mapdata.atomic import atomic_write, atomic_write_json, utc_now
from vista_tui.mapdata.errors import MapError
from vista_tui.mapdata.store import read_manifest

RENDERS_DIR = "renders"
"""Where a map keeps its renders: `<map>/renders/<key>.png` plus `<key>.json`."""

KEY_VERSION = 1
"""Version of the cache-key recipe itself."""
SKETCH_VERSION = 2
"""Bump when pipeline/render/sketch.py draws differently, so cached sketches are redrawn."""
DIFFUSION_VERSION = 1
"""Bump when pipeline/render renders differently for the same parameters."""
FINGERPRINT_FILES = ("tree", "contexts")
"""The map files a render depends on (labels, prompts, boxes; positions, activations)."""
KEY_PATTERN = re.compile(r"^(?:[a-z]+-)?[0-9a-f]{8,64}$")
"""What a render key (a file stem in renders/) looks like: it can never name a path elsewhere."""

RenderKind = Literal["node", "panorama"]
Renderer = Literal["sketch", "diffusion"]

MIN_SIDE = 64
MAX_SIDE = 8192
MAX_STEPS = 1000


def default_size(kind: RenderKind, renderer: Renderer) -> tuple[int, int]:
    """Width and height when none is given: a landscape sketch; SD's native square per node, 2:1 panoramas."""
    if renderer == "sketch":
        return (1024, 768)
    return (512, 512) if kind == "node" else (1024, 512)


@dataclass(frozen=True)
class RenderJob:
    """What to render: a node of a map (or the whole map as a panorama), how, and with which model.

    Its fields (but `debug_delay_s`) define the image, hence its key. Its JSON form is the
    worker's `render` request (`to_request` / `from_request`), so both ends of the protocol
    read a job the same way.
    """

    map_dir: Path
    """The map directory."""
    node_id: str | None = None
    """The node to render (None = the root); for a panorama, the node whose child clusters become regions."""
    kind: RenderKind = "node"
    model: str | None = None
    """A diffusers directory or Hugging Face id; None draws a sketch instead (no weights needed)."""
    seed: int = 0
    steps: int = 30
    width: int | None = None
    """Pixels; None = `default_size(kind, renderer)`."""
    height: int | None = None
    guidance: float = 7.5
    debug_delay_s: float = 0.0
    """Tests only: seconds the worker sleeps per step; honoured only when the worker has VISTA_RENDER_TEST=1."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "map_dir", Path(self.map_dir))
        if self.kind not in ("node", "panorama"):
            raise ValueError(f"render kind must be 'node' or 'panorama', got {self.kind!r}")
        if self.node_id is not None and (not isinstance(self.node_id, str) or not self.node_id):
            raise ValueError(f"node id must be a non-empty string or None, got {self.node_id!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ValueError(f"model must be a directory or model id, or None for a sketch, got {self.model!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}")
        default_w, default_h = default_size(self.kind, self.renderer)
        for name, default in (("width", default_w), ("height", default_h)):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
                raise ValueError(f"{name} must be an integer from {MIN_SIDE} to {MAX_SIDE} pixels, got {value!r}")
        if not isinstance(self.guidance, int | float) or not math.isfinite(self.guidance) or self.guidance < 0:
            raise ValueError(f"guidance must be a finite number ≥ 0, got {self.guidance!r}")
        object.__setattr__(self, "guidance", float(self.guidance))
        if not isinstance(self.debug_delay_s, int | float) or not 0 <= self.debug_delay_s <= 60:
            raise ValueError(f"debug_delay_s must be between 0 and 60 seconds, got {self.debug_delay_s!r}")

    @property
    def renderer(self) -> Renderer:
        """What draws the job: a sketch without a model, a diffusion render with one."""
        return "sketch" if self.model is None else "diffusion"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, defaults filled in."""
        assert self.width is not None and self.height is not None  # set in __post_init__
        return (self.width, self.height)

    def to_request(self, job_id: str) -> dict[str, Any]:
        """The worker's `render` request for this job."""
        request: dict[str, Any] = {
            "op": "render",
            "job_id": job_id,
            "map": str(self.map_dir),
            "node": self.node_id,
            "kind": self.kind,
            "model": self.model,
            "seed": self.seed,
            "steps": self.steps,
            "width": self.width,
            "height": self.height,
            "guidance": self.guidance,
        }
        if self.debug_delay_s:
            request["debug_delay_s"] = self.debug_delay_s
        return request

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> RenderJob:
        """A job from a `render` request (unknown keys ignored); raises ValueError naming what is wrong."""
        if not isinstance(request.get("map"), str) or not request["map"]:
            raise ValueError("render request has no 'map' (the map directory)")
        known = {f.name for f in fields(cls)} - {"map_dir", "node_id"}
        params = {name: request[name] for name in known if request.get(name) is not None}
        return cls(map_dir=Path(request["map"]), node_id=request.get("node"), **params)


# -- the key ---------------------------------------------------------------------------------------

_fingerprints: dict[tuple[str, int, int, int, int], str] = {}
_root_ids: dict[str, str] = {}
_memo_lock = threading.Lock()
"""Guards both memos: keys are computed on the UI's worker threads, the queue's and the worker's."""


def _file_digest(path: Path) -> str:
    """blake2b of a file's bytes, memoised by its stat so that asking again costs a stat.

    The inode is part of the memo: map files are replaced by rename (a new inode), which two
    writes within one timestamp tick would otherwise hide.
    """
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _memo_lock:
        if memo in _fingerprints:
            return _fingerprints[memo]
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    with _memo_lock:
        _fingerprints[memo] = digest
    return digest


def map_fingerprint(map_dir: Path) -> str:
    """A hash of the bytes of the map files renders depend on; raises MapError for an unreadable map."""
    map_dir = Path(map_dir)
    manifest = read_manifest(map_dir)
    parts = [f"schema={manifest.schema_version}"]
    for key in FINGERPRINT_FILES:
        entry = manifest.files.get(key)
        if entry is None:
            raise MapError(f"map {map_dir.name} has no {key} file: rebuild it with `vista build`")
        try:
            parts.append(f"{key}={_file_digest(map_dir / entry.name)}")
        except OSError as error:
            raise MapError(f"map {map_dir.name}: cannot read {entry.name} ({error.strerror or error})") from None
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def _root_id(map_dir: Path, fingerprint: str) -> str:
    """The id of the map's root node (memoised by the map's fingerprint)."""
    with _memo_lock:
        if fingerprint in _root_ids:
            return _root_ids[fingerprint]
    from vista_tui.mapdata.reader import MapReader  # numpy + pyarrow for tree.parquet; most keys hit the memo

    try:
        root = MapReader(map_dir).root.node_id
    except (IndexError, OSError) as error:
        raise MapError(f"map {map_dir.name} has an unreadable or empty tree ({error})") from None
    with _memo_lock:
        _root_ids[fingerprint] = root
    return root


def model_key(model: str) -> str:
    """A model as the cache knows it: a local directory by its absolute path, else the id as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model.strip()


def render_key(job: RenderJob, options: Mapping[str, Any] | None = None) -> str:
    """The cache key (and file stem) of a job's image: `sketch-…` or `diffusion-…` plus a content hash.

    The only render key there is: the TUI, the worker and the pipeline's render step all use
    it, so each finds what another rendered. `options` name renderer settings beyond the job
    that change the picture (JSON values); the worker has none, and the pipeline's `run`
    passes only those of its config that differ from the worker's, so the same picture gets
    the same key. Raises MapError when the map cannot be read.
    """
    fingerprint = map_fingerprint(job.map_dir)
    # The root named by its id or by None is the same picture: one key.
    node = None if job.node_id is None or job.node_id == _root_id(job.map_dir, fingerprint) else job.node_id
    payload: dict[str, Any] = {
        "key_version": KEY_VERSION,
        "renderer": job.renderer,
        "map": fingerprint,
        "kind": job.kind,
        "node": node,
        "width": job.width,
        "height": job.height,
    }
    if job.model is None:
        payload["sketch_version"] = SKETCH_VERSION
    else:
        payload.update(
            diffusion_version=DIFFUSION_VERSION,
            model=model_key(job.model),
            seed=job.seed,
            steps=job.steps,
            guidance=job.guidance,
        )
    if options:  # absent, not empty, when there are none: keys from before options existed stay valid
        payload["options"] = dict(options)
    digest = hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=12).hexdigest()
    return f"{job.renderer}-{digest}"


# -- where renders are -------------------------------------------------------------------------------


def renders_dir(map_dir: Path) -> Path:
    """A map's render folder."""
    return Path(map_dir) / RENDERS_DIR


def render_files(folder: Path, key: str) -> tuple[Path, Path]:
    """The image and sidecar of `key` in a render folder; ValueError for a key that is not one."""
    if not KEY_PATTERN.match(key):
        raise ValueError(f"key must be 8-64 lowercase hex characters after an optional `name-`, got {key!r}")
    folder = Path(folder)
    return folder / f"{key}.png", folder / f"{key}.json"


def render_paths(job: RenderJob, key: str | None = None) -> tuple[Path, Path]:
    """Where a job's image and sidecar are (or will be), under `key` (default `render_key(job)`)."""
    return render_files(renders_dir(job.map_dir), key or render_key(job))


def cached_render(job: RenderJob, key: str | None = None) -> Path | None:
    """The image already rendered for this job (under `key`, default `render_key(job)`), or None; never starts the worker.

    A render is complete when its sidecar exists (written after the image). None too when the
    map cannot be read: the worker then reports why.
    """
    try:
        image, sidecar = render_paths(job, key)
    except MapError:
        return None
    return image if image.is_file() and sidecar.is_file() else None


# -- the sidecar -------------------------------------------------------------------------------------


class RenderSidecar(TypedDict, total=False):
    """What made a rendered image: `<key>.json` beside `<key>.png` (cache/README.md, "Renders").

    Every field is optional to a reader (older or other renderers write fewer); unknown keys
    are kept and ignored.
    """

    key: str
    """The render key, the file stem."""
    created: str
    """ISO-8601 UTC time the render was saved."""
    kind: Literal["sketch", "diffusion"]
    render: RenderKind
    map_id: str
    node: str | None
    """The node id the job named (None: the root)."""
    width: int
    height: int
    seconds: float
    """Time to render (a diffusion render counts its denoising and decoding only)."""
    # a sketch
    sketch_version: int
    font: str
    note: str
    versions: dict[str, str]
    # a diffusion render
    prompts: list[str]
    prompt: str | None
    """The prompt when there is exactly one, else None."""
    negative_prompt: str
    background_prompt: str
    model: str
    seed: int
    steps: int
    guidance: float
    size: list[int]
    """[width, height] of the canvas."""
    window: int
    stride: int
    bootstrap_steps: int
    scheduler: str
    version: int
    """DIFFUSION_VERSION of the renderer."""
    regions: list[str]
    """What each prompt stands for (node or context ids), in the order of `prompts`."""
    device: str
    dtype: str
    per: str
    """Renders of the pipeline's `run` only: cluster, context or node."""


def read_sidecar(image: Path) -> RenderSidecar:
    """The sidecar of a rendered image ({} when missing or unreadable)."""
    try:
        raw = json.loads(Path(image).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}  # type: ignore[return-value]


def write_render(folder: Path, key: str, png: bytes, sidecar: Mapping[str, Any]) -> Path:
    """Write `<key>.png`, then `<key>.json` with `key` and `created` first (atomically each); returns the image.

    The sidecar is written last: its presence marks a complete render (`cached_render`).
    """
    image, side = render_files(folder, key)
    atomic_write(image, lambda handle: handle.write(png))
    atomic_write_json(side, {"key": key, "created": utc_now(), **sidecar})
    return image
