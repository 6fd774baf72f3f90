"""Where maps live: the store directory, the maps in it, their manifests.

JSON and the standard library only (no numpy, no pyarrow): the CLI, the picker and the
explorer's first screen need nothing more, and start before the map's tables are read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vista_tui.mapdata.atlas import ATLASES_DIR, AtlasEntry, find_atlas, list_atlases
from vista_tui.mapdata.atomic import read_json_manifest
from vista_tui.mapdata.errors import MapCorruptError, MapError, MapNotFoundError
from vista_tui.mapdata.schema import SCHEMA_VERSION, Manifest

if TYPE_CHECKING:
    from vista_tui.mapdata.matches import MatchEntry

ENV_CACHE = "VISTA_CACHE"
MAPS_DIR = "maps"
MANIFEST = "manifest.json"
REBUILD_HINT = "rebuild it with `vista build` (or `vista demo` for the demo maps)"


def read_manifest(map_dir: Path) -> Manifest:
    """The manifest of a map directory, validated; raises a MapError with a one-line message."""
    return read_json_manifest(
        map_dir,
        MANIFEST,
        noun="map",
        unfinished="an unfinished build?",
        id_field=None,
        version=SCHEMA_VERSION,
        hint=REBUILD_HINT,
        parse=Manifest.from_dict,
    )


def checked_file(map_dir: Path, manifest: Manifest, key: str) -> Path:
    """The path of the map's `key` file, after checking it is there with the size the manifest records."""
    entry = manifest.files.get(key)
    if entry is None:
        raise MapCorruptError(f"map {map_dir.name} has no {key} file: {REBUILD_HINT}")
    path = map_dir / entry.name
    if not path.is_file():
        raise MapCorruptError(f"map {map_dir.name} is missing {entry.name}: {REBUILD_HINT}")
    size = path.stat().st_size
    if size != entry.size:
        raise MapCorruptError(
            f"{entry.name} in map {map_dir.name} is {size} bytes, the manifest says {entry.size} "
            f"(truncated or from an interrupted build): {REBUILD_HINT}"
        )
    return path


def verify_files(map_dir: Path, manifest: Manifest) -> None:
    """Check that every file the manifest lists is there with its recorded size (raises MapCorruptError)."""
    for key in manifest.files:
        checked_file(map_dir, manifest, key)


def verify_map(map_dir: Path) -> Manifest:
    """Read a map's manifest and check its files, without reading them; raises a one-line MapError."""
    manifest = read_manifest(map_dir)
    verify_files(Path(map_dir), manifest)
    return manifest


def _checkout_cache(cwd: Path) -> Path | None:
    """`<checkout>/cache` when the working directory is in a checkout of this repository (at its root
    or in any folder below it: the nearest folder up that holds this project's pyproject.toml and
    cache/README.md)."""
    for folder in (cwd, *cwd.parents):
        pyproject = folder / "pyproject.toml"
        readme = folder / "cache" / "README.md"
        if pyproject.is_file() and readme.is_file():
            try:
                if 'name = "vista-tui"' in pyproject.read_text(encoding="utf-8"):
                    return folder / "cache"
            except OSError:
                continue
    return None


def resolve_store(cache: str | Path | None = None, cwd: Path | None = None) -> Path:
    """The store: `--cache DIR`, else $VISTA_CACHE, else the checkout's cache/ when run from inside a
    checkout (any folder of it), else the user cache."""
    if cache:
        return Path(cache).expanduser()
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    checkout = _checkout_cache((cwd or Path.cwd()).absolute())
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
    """A store directory: `maps/<map_id>/`, `atlases/<atlas_id>/`, plus heavy shared artefacts in their own folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def maps_dir(self) -> Path:
        return self.root / MAPS_DIR

    def map_path(self, map_id: str) -> Path:
        return self.maps_dir / map_id

    @property
    def atlases_dir(self) -> Path:
        """Where the store's atlases are (`<store>/atlases/`)."""
        return self.root / ATLASES_DIR

    def atlas_path(self, atlas_id: str) -> Path:
        """The directory of an atlas (itself a store root for its latents' maps)."""
        return self.atlases_dir / atlas_id

    def list_atlases(self) -> list[AtlasEntry]:
        """Every atlas, newest first, from its manifest alone (cheap); unreadable ones carry their error."""
        return list_atlases(self.atlases_dir)

    def find_atlas(self, name: str) -> Path:
        """An atlas by its directory, its id, or a unique prefix or suffix of the id (one-line MapNotFoundError)."""
        return find_atlas(self.atlases_dir, name)

    @property
    def matches_dir(self) -> Path:
        """Where the store's match tables are (`<store>/matches/`)."""
        from vista_tui.mapdata.matches import MATCHES_DIR  # the match tables' module: not for opening a map

        return self.root / MATCHES_DIR

    def match_path(self, match_id: str) -> Path:
        """The directory of a match table."""
        return self.matches_dir / match_id

    def list_matches(self) -> list[MatchEntry]:
        """Every match table, newest first, from its manifest alone; unreadable ones carry their error."""
        from vista_tui.mapdata.matches import list_match_tables

        return list_match_tables(self.matches_dir)

    def matches_for(self, sae: str) -> list[MatchEntry]:
        """The readable match tables with `sae` (as a map's provenance names it) on either side."""
        from vista_tui.mapdata.matches import tables_for_sae

        return tables_for_sae(self.matches_dir, sae)

    def map_of(self, sae: str, latent: int) -> Path | None:
        """The newest readable map of `latent` of `sae` in this store, or None."""
        from vista_tui.mapdata.matches import sae_key

        key = sae_key(sae)
        for entry in self.list_maps():
            manifest = entry.manifest
            if (
                manifest is not None
                and manifest.provenance.latent == latent
                and sae_key(manifest.provenance.sae) == key
            ):
                return entry.path
        return None

    def artefact_dir(self, kind: str, key: str) -> Path:
        """Folder for a shared artefact (`saes`, `harvests`, ...) keyed by what made it."""
        return self.root / kind / key

    def list_maps(self) -> list[MapEntry]:
        """Every map directory, newest first; unreadable ones carry their error instead."""
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
        """A map by path to its directory, or in this store by its id, a unique prefix or suffix of the
        id (any case), or its latent (`702`, `L702`) when only one map has that latent.

        A latent is tried before prefixes and suffixes: `702` is the map of latent 702 even where
        another id ends in `1702`. A name that fits several maps is refused with one line naming
        them (MapNotFoundError), never guessed.
        """
        as_path = Path(name).expanduser()
        if (as_path / MANIFEST).is_file() or (as_path.is_dir() and as_path.parent.name == MAPS_DIR):
            return as_path
        candidate = self.map_path(name)
        if name and candidate.is_dir():
            return candidate
        entries = self.list_maps()
        matches = matching_maps(entries, name)
        if len(matches) == 1:
            return matches[0].path
        if matches:
            shown = ", ".join(_describe_entry(entry) for entry in matches[:SHOWN_MAPS])
            more = f" and {len(matches) - SHOWN_MAPS} more" if len(matches) > SHOWN_MAPS else ""
            raise MapNotFoundError(
                f"map name {name!r} is ambiguous in {self.maps_dir}: {shown}{more}; "
                "give more of the id (`vista list` shows them)"
            )
        known = [e.map_id for e in entries]
        hint = (
            f"known maps: {', '.join(known[:SHOWN_MAPS])}; `vista list` shows them all"
            if known
            else "the store has no maps; run `vista demo` or `vista build`"
        )
        raise MapNotFoundError(f"no map {name!r} in {self.maps_dir} ({hint})")


SHOWN_MAPS = 5
"""How many maps an error names."""
_LATENT = re.compile(r"[Ll]?(\d+)")


def matching_maps(entries: list[MapEntry], name: str) -> list[MapEntry]:
    """The maps `name` may mean, short of an exact id: those of latent N (`N`, `LN`) when there are
    any, else those whose id starts or ends with `name` (any case)."""
    if not name:
        return []
    latent = _LATENT.fullmatch(name)
    if latent is not None:
        number = int(latent.group(1))
        of_latent = [e for e in entries if e.manifest is not None and e.manifest.provenance.latent == number]
        if of_latent:
            return of_latent
    needle = name.lower()
    return [e for e in entries if e.map_id.lower().startswith(needle) or e.map_id.lower().endswith(needle)]


def _describe_entry(entry: MapEntry) -> str:
    """`id (latent 702)`: a candidate in an error."""
    if entry.manifest is None:
        return f"{entry.map_id} (unreadable)"
    return f"{entry.map_id} (latent {entry.manifest.provenance.latent})"
