"""Where maps live: the store directory and the maps in it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vista_tui.mapdata.errors import MapError, MapNotFoundError
from vista_tui.mapdata.schema import Manifest

ENV_CACHE = "VISTA_CACHE"
MAPS_DIR = "maps"
MANIFEST = "manifest.json"


def _checkout_cache(cwd: Path) -> Path | None:
    """`./cache` when the working directory is a checkout of this repository."""
    pyproject = cwd / "pyproject.toml"
    readme = cwd / "cache" / "README.md"
    if pyproject.is_file() and readme.is_file():
        try:
            if 'name = "vista-tui"' in pyproject.read_text(encoding="utf-8"):
                return cwd / "cache"
        except OSError:
            return None
    return None


def resolve_store(cache: str | Path | None = None, cwd: Path | None = None) -> Path:
    """The store: `--cache DIR`, else $VISTA_CACHE, else ./cache in a checkout, else the user cache."""
    if cache:
        return Path(cache).expanduser()
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    checkout = _checkout_cache(cwd or Path.cwd())
    if checkout is not None:
        return checkout
    import platformdirs  # small, pure Python; imported here because most calls pass --cache

    return Path(platformdirs.user_cache_dir("vista-tui"))


@dataclass(frozen=True)
class MapEntry:
    """A map directory in the store, with its manifest or the reason it cannot be read."""

    map_id: str
    path: Path
    manifest: Manifest | None
    error: str | None


class Store:
    """A store directory: `maps/<map_id>/` plus heavy shared artefacts in their own folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def maps_dir(self) -> Path:
        return self.root / MAPS_DIR

    def map_path(self, map_id: str) -> Path:
        return self.maps_dir / map_id

    def artefact_dir(self, kind: str, key: str) -> Path:
        """Folder for a shared artefact (`saes`, `harvests`, ...) keyed by what made it."""
        return self.root / kind / key

    def list_maps(self) -> list[MapEntry]:
        """Every map directory, newest first; unreadable ones carry their error instead."""
        from vista_tui.mapdata.reader import read_manifest

        if not self.maps_dir.is_dir():
            return []
        entries: list[MapEntry] = []
        for path in self.maps_dir.iterdir():
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                entries.append(MapEntry(path.name, path, read_manifest(path), None))
            except MapError as error:
                entries.append(MapEntry(path.name, path, None, str(error)))
        entries.sort(key=lambda e: (e.manifest.created if e.manifest else "", e.map_id), reverse=True)
        return entries

    def find_map(self, name: str) -> Path:
        """A map by id in this store, or by path to its directory."""
        as_path = Path(name).expanduser()
        if (as_path / MANIFEST).is_file() or (as_path.is_dir() and as_path.parent.name == MAPS_DIR):
            return as_path
        candidate = self.map_path(name)
        if candidate.is_dir():
            return candidate
        known = [e.map_id for e in self.list_maps()]
        hint = (
            f"known maps: {', '.join(known[:5])}"
            if known
            else "the store has no maps; run `vista demo` or `vista build`"
        )
        raise MapNotFoundError(f"no map {name!r} in {self.maps_dir} ({hint})")
