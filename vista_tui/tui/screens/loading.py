"""What the explorer shows while a map or an atlas opens: its header at once, the rest when it is read.

Built from the manifest alone (JSON), so the first frame needs neither numpy nor pyarrow:
opening a map draws its header in about the time a bare Textual app takes to start, and
the tree, labels and contexts follow as soon as the map's tables are read. No footer: its keys
(each a widget, drawn again as the bindings settle) took ~30 ms of the one core that is also
reading the map, for a screen shown a few hundred milliseconds; the app's keys (q, ?) still work.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Center, Horizontal, Middle
from textual.screen import Screen
from textual.widgets import Static

from vista_tui.core.sanitize import sanitize
from vista_tui.mapdata import AtlasManifest, Manifest


def map_header(manifest: Manifest) -> Text:
    """The one-line header of a map: id, latent, model, hook, SAE, number of contexts."""
    prov = manifest.provenance
    return Text.assemble(
        (sanitize(manifest.map_id), "bold"),
        f" · latent {prov.latent} · {sanitize(prov.model)} · hook {sanitize(prov.hook)} · "
        f"SAE {sanitize(prov.sae)} · {prov.n_contexts:,} contexts",
        no_wrap=True,
        overflow="ellipsis",
    )


class LoadingScreen(Screen[None]):
    """A map's header and a line saying it is being read (replaced by the map screen)."""

    DEFAULT_CSS = """
    LoadingScreen #loading { color: $text-muted; width: auto; }
    """

    def __init__(self, manifest: Manifest) -> None:
        super().__init__()
        self.manifest = manifest

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-row"):
            yield Static(map_header(self.manifest), id="map-header")
        with Middle(), Center():
            n = self.manifest.provenance.n_contexts
            yield Static(f"reading the cluster tree and {n:,} contexts…", id="loading")


def atlas_header(manifest: AtlasManifest, n_maps: int | None = None) -> Text:
    """The one-line header of an atlas: id, latents (and maps, once counted), model, hook, SAE."""
    maps = f" · {n_maps:,} maps" if n_maps is not None else ""
    return Text.assemble(
        ("atlas ", "bold"),
        (sanitize(manifest.atlas_id), "bold"),
        f" · {len(manifest.latents):,} latents{maps} · {sanitize(manifest.model)} · "
        f"hook {sanitize(manifest.hook)} · SAE {sanitize(manifest.sae)}",
        no_wrap=True,
        overflow="ellipsis",
    )


class AtlasLoadingScreen(Screen[None]):
    """An atlas's header and a line saying its latents are being read (replaced by the latent browser)."""

    DEFAULT_CSS = """
    AtlasLoadingScreen #loading { color: $text-muted; width: auto; }
    """

    def __init__(self, manifest: AtlasManifest) -> None:
        super().__init__()
        self.manifest = manifest

    def compose(self) -> ComposeResult:
        yield Static(atlas_header(self.manifest), id="atlas-header")
        with Middle(), Center():
            yield Static(f"reading {len(self.manifest.latents):,} latents…", id="loading")
