"""The VISTA-TUI application: the map picker, the explorer, the latent browser of an atlas, and the one
place worker failures land.

Start-up is kept to what the first frame needs: this module imports neither numpy nor pyarrow
nor the explorer's widgets. A map opens in a worker (which imports them), behind a screen
drawn from its manifest alone; so does an atlas. A latent's map opens over the atlas's browser,
and Backspace (or Esc) in it comes back to the browser.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard

from textual import events, on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from vista_tui.core.annotations import AnnotationError, TriageConfig
from vista_tui.core.render_env import ENV_MODEL
from vista_tui.core.sanitize import sanitize
from vista_tui.mapdata import AtlasEntry, MapEntry, MapError, Store, read_atlas_manifest, read_manifest
from vista_tui.tui.screens.loading import AtlasLoadingScreen, LoadingScreen

if TYPE_CHECKING:
    from vista_tui.core.atlas_view import AtlasView
    from vista_tui.core.model import MapModel
    from vista_tui.core.render_protocol import RenderEvent
    from vista_tui.core.render_queue import RenderQueue
    from vista_tui.core.triage import TriageSession
    from vista_tui.tui.screens.atlas import AtlasScreen
    from vista_tui.tui.screens.map import MapScreen
    from vista_tui.tui.screens.picker import PickerScreen


def _is_atlas_screen(screen: Screen[Any]) -> TypeGuard[AtlasScreen]:
    """Whether `screen` is a latent browser, without importing its module (numpy, pyarrow: ~150 ms).

    A browser exists only once its module is imported (by the atlas's worker), so a map opened
    at start-up never pays for that import on the UI thread, before its first screen.
    """
    atlas = sys.modules.get("vista_tui.tui.screens.atlas")
    return atlas is not None and isinstance(screen, atlas.AtlasScreen)


def _is_picker_screen(screen: Screen[Any]) -> TypeGuard[PickerScreen]:
    """Whether `screen` is the map picker; its module loads when a picker is first shown, so a map opened
    at start-up does not wait for it (nor the help and error screens: they load when first shown)."""
    picker = sys.modules.get("vista_tui.tui.screens.picker")
    return picker is not None and isinstance(screen, picker.PickerScreen)


class VistaApp(App[None]):
    """Walk a latent's map: picker → explorer; help, palette and errors on top."""

    CSS_PATH = "app.tcss"
    TITLE = "VISTA"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help"),
        Binding(
            "ctrl+p",
            "command_palette",
            "Commands",
            show=False,
            tooltip="Command palette: jump to a node by label or id, open another map, any action",
        ),
    ]

    class MapLoaded(Message):
        """A map finished opening in a worker."""

        def __init__(self, model: MapModel, triage: TriageSession) -> None:
            self.model = model
            self.triage = triage
            super().__init__()

    class AtlasLoaded(Message):
        """An atlas's latents were read in a worker."""

        def __init__(self, view: AtlasView) -> None:
            self.view = view
            super().__init__()

    class RenderUpdate(Message):
        """A render job changed state (posted from the render queue's thread)."""

        def __init__(self, event: RenderEvent) -> None:
            self.event = event
            super().__init__()

    def __init__(
        self,
        store: Store,
        map_path: Path | None = None,
        *,
        graphics: str = "halfcell",
        diffusion_model: str | None = None,
        triage_config: TriageConfig | None = None,
        atlas_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.initial_map = map_path
        self.initial_atlas = atlas_path
        """An atlas to open in the latent browser at start (when no map is given)."""
        self._entries: list[MapEntry] | None = None
        self.model: MapModel | None = None
        self.graphics = graphics
        """How images are drawn: 'kitty', 'sixel', 'halfcell' or 'unicode' (`--graphics auto` is probed before start-up)."""
        self._image_class: type[Any] | None = None
        self.diffusion_model = diffusion_model if diffusion_model is not None else os.environ.get(ENV_MODEL) or None
        """What `r` renders with; None draws sketches."""
        self._renders: RenderQueue | None = None
        self.map_screen: MapScreen | None = None
        self.triage_config = triage_config
        """Statuses and author for triage; None reads `load_config()` (VISTA_CONFIG, the user config) per map."""
        self.triage: TriageSession | None = None
        """The open map's triage session (its annotation store over its tree)."""
        self._maps_below: list[tuple[MapScreen, MapModel | None, TriageSession | None]] = []
        """Maps under the one on screen, each with its model and triage session (a match opened over a map)."""
        self.label_command: list[str] = [sys.executable, "-m", "pipeline", "label"]
        """What `L` runs to relabel a node, before `MAP_DIR --node ID` (a child process: the TUI never imports the pipeline)."""

    @property
    def renders(self) -> RenderQueue:
        """The render queue; its worker process starts with the first job."""
        if self._renders is None:
            from vista_tui.core.render_queue import RenderQueue

            self._renders = RenderQueue(
                self.store.root, on_event=lambda event: self.post_message(self.RenderUpdate(event))
            )
        return self._renders

    def image_widget(self) -> type[Any]:
        """The textual-image widget class for `graphics` (textual-image is imported on first use)."""
        if self._image_class is None:
            from vista_tui.tui.graphics import image_widget_class

            self._image_class = image_widget_class(self.graphics)
        return self._image_class

    async def action_quit(self) -> None:
        if self._renders is not None:
            self._renders.close(timeout=2.0)
        if self.triage is not None:
            self.triage.close()
            self.triage = None
        while self._maps_below:
            _, _, triage = self._maps_below.pop()
            if triage is not None:
                triage.close()
        self.exit()

    def on_mount(self) -> None:
        if self.initial_map is not None:
            self.open_map(self.initial_map)
        elif self.initial_atlas is not None:
            self.open_atlas(self.initial_atlas)
        else:
            self.action_pick_map()
            self.call_after_refresh(gc.enable)  # see _freeze_heap

    # -- maps ---------------------------------------------------------------------------------

    def store_entries(self, refresh: bool = False) -> list[MapEntry]:
        """The store's maps, newest first (listed once, refreshed on demand)."""
        if self._entries is None or refresh:
            self._entries = self.store.list_maps()
        return self._entries

    def store_atlases(self) -> list[AtlasEntry]:
        """The store's atlases, newest first (their manifests only)."""
        return self.store.list_atlases()

    def action_pick_map(self) -> None:
        from vista_tui.tui.screens.picker import PickerScreen

        picker = PickerScreen(self.store_entries(refresh=True), self.store.maps_dir, atlases=self.store_atlases())
        while self.map_screen is not None and self.map_screen is self.screen and self._map_below():
            self.action_back_to_atlas()  # the maps opened over maps go, down to the first
        if self.map_screen is not None and self.map_screen is self.screen and self._atlas_below():
            self._leave_map()  # the browser under the map goes too: the picker replaces both
            self.pop_screen()
        self._show_base(picker)

    def _show_base(self, screen: Screen[Any]) -> None:
        """Show a picker, loading, browser or map screen: in place of the current one of those, else on top."""
        current = self.screen
        if (
            isinstance(current, LoadingScreen | AtlasLoadingScreen)
            or _is_picker_screen(current)
            or _is_atlas_screen(current)
            or current is self.map_screen
        ):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    # -- atlases --------------------------------------------------------------------------------

    def open_atlas(self, path: Path) -> None:
        """Open an atlas's latent browser; its header shows at once, the table when its latents are read."""
        with contextlib.suppress(MapError):  # the worker reports it, as for any other unreadable atlas
            self._show_base(AtlasLoadingScreen(read_atlas_manifest(path)))
        self._load_atlas(path)

    @work(thread=True, exclusive=True, group="open-atlas", exit_on_error=False, description="open the atlas")
    def _load_atlas(self, path: Path) -> None:
        # numpy, pyarrow and the browser's widgets are imported here, off the UI thread.
        import vista_tui.tui.screens.atlas  # noqa: F401 - so that the UI thread finds it imported
        from vista_tui.core.atlas_view import AtlasView

        self.post_message(self.AtlasLoaded(AtlasView.open(path)))

    @on(AtlasLoaded)
    def _atlas_loaded(self, event: AtlasLoaded) -> None:
        from vista_tui.core.triage_config import load_config
        from vista_tui.tui.screens.atlas import AtlasScreen

        config = self.triage_config
        if config is None:
            try:
                config = load_config()
            except AnnotationError:  # a map screen reports a bad config; the browser counts with the defaults
                config = None
        self._show_base(AtlasScreen(event.view, config))
        self.sub_title = event.view.manifest.atlas_id
        self.call_after_refresh(self._freeze_heap)

    def open_latent_map(self, path: Path) -> None:
        """Open a latent's map over the latent browser (Backspace in the map comes back)."""
        with contextlib.suppress(MapError):  # the worker reports it, as for any other unreadable map
            self.push_screen(LoadingScreen(read_manifest(path)))
        self._load_map(path)

    def _atlas_below(self) -> bool:
        """Whether the screen under the current one is a latent browser."""
        stack = self.screen_stack
        return len(stack) >= 2 and _is_atlas_screen(stack[-2])

    def _map_below(self) -> bool:
        """Whether the screen under the current one is a map this one was opened over (a match)."""
        stack = self.screen_stack
        return bool(self._maps_below) and len(stack) >= 2 and stack[-2] is self._maps_below[-1][0]

    def can_go_back(self) -> bool:
        """Whether the map on screen was opened from a latent browser or over another map (Backspace goes back)."""
        return (
            self.map_screen is not None
            and self.screen is self.map_screen
            and (self._atlas_below() or self._map_below())
        )

    def action_back_to_atlas(self) -> None:
        """Backspace or Esc in a map opened from an atlas or over another map: back to it, as it was."""
        if self.can_go_back():
            over_map = self._map_below()
            self._leave_map()
            self.pop_screen()
            if over_map:
                self._restore_map_below()
            elif _is_atlas_screen(self.screen):
                self.sub_title = self.screen.view.manifest.atlas_id

    def open_matched_map(self, path: Path) -> None:
        """Open another map over the one on screen (a latent matched in another SAE); Backspace or Esc there
        comes back to this one, its triage session still open."""
        try:
            manifest = read_manifest(path)
        except MapError as error:
            self.notify(sanitize(str(error), 400), severity="error", timeout=8, markup=False)
            return
        if self.map_screen is not None:
            self._maps_below.append((self.map_screen, self.model, self.triage))
            self.map_screen, self.model, self.triage = None, None, None
        self.push_screen(LoadingScreen(manifest))
        self._load_map(path)

    def _restore_map_below(self) -> None:
        """The map under the one that went is the open map again."""
        self.map_screen, self.model, self.triage = self._maps_below.pop()
        if self.model is not None:
            self.sub_title = self.model.map_id

    def _leave_map(self) -> None:
        """The open map's triage session closes; its screen goes."""
        if self.triage is not None:
            self.triage.close()
            self.triage = None
        self.map_screen = None
        self.model = None

    def open_map(self, path: Path) -> None:
        """Open a map in a worker; its header shows at once, the explorer when it is read."""
        with contextlib.suppress(MapError):  # the worker reports it, as for any other unreadable map
            self._show_base(LoadingScreen(read_manifest(path)))
        self._load_map(path)

    @work(thread=True, exclusive=True, group="open", exit_on_error=False, description="open the map")
    def _load_map(self, path: Path) -> None:
        # numpy, pyarrow and the explorer's widgets are imported here, off the UI thread.
        import vista_tui.tui.screens.map  # noqa: F401 - so that the UI thread finds it imported
        from vista_tui.core.model import MapModel
        from vista_tui.core.triage import open_triage

        model = MapModel.open_for_explorer(path)
        triage = open_triage(model, self.triage_config)  # never raises AnnotationError: read-only instead
        self.post_message(self.MapLoaded(model, triage))

    @on(MapLoaded)
    def _map_loaded(self, event: MapLoaded) -> None:
        from vista_tui.core.triage import reconcile_message
        from vista_tui.tui.screens.map import MapScreen

        self.model = event.model
        if self.triage is not None:
            self.triage.close()
        self.triage = triage = event.triage
        if triage.error is not None:
            self.notify(f"triage is read-only: {triage.error}", severity="error", timeout=10)
        elif (moved := reconcile_message(triage.report)) is not None:
            self.notify(moved, timeout=8)
        screen = MapScreen(event.model, triage)
        self._show_base(screen)
        self.map_screen = screen
        self.sub_title = event.model.map_id
        self.call_after_refresh(self._freeze_heap)

    @staticmethod
    def _freeze_heap() -> None:
        """Take what is alive once a map is drawn (the map, the widgets, Textual) out of the cyclic GC.

        A full collection walks every tracked object: with a map open that took 40-60 ms, and
        landing on a key press it was the slowest repaints (p95). Frozen objects are still freed
        by reference counting; `on_unmount` thaws them so that nothing outlives the app.

        The cyclic GC is switched back on here: `vista explore` starts the app with it off
        (cli/maps.py), because its collections during start-up (imports, the first screens'
        widgets) cost ~50 ms of CPU before the map is drawn, for a few cycles of garbage at
        most; this collection takes them. The picker, and a map or atlas that fails to open,
        switch it back on too.
        """
        gc.collect()
        gc.freeze()
        gc.enable()

    def on_unmount(self) -> None:
        gc.unfreeze()
        gc.enable()

    # -- renders -------------------------------------------------------------------------------

    @on(RenderUpdate)
    def _render_update(self, event: RenderUpdate) -> None:
        screen = self.map_screen
        if screen is not None and screen.is_attached and event.event.job.map_dir == screen.model.reader.path:
            screen.render_controller.changed(event.event)

    def action_open_render(self) -> None:
        """`o`: the selected node's render in an external viewer, else its path copied (OSC 52)."""
        if self.map_screen is not None:
            self.map_screen.action_open_render()

    # -- input -------------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        """Drop keys once the app is quitting: a key typed right after `q` (the `s` of "qs") would run its
        action while the teardown closes the map's stores and empties screens, and crash into a traceback."""
        if self._exit and isinstance(event, events.Key):
            return
        await super().on_event(event)

    # -- help ----------------------------------------------------------------------------------

    def action_help(self) -> None:
        from vista_tui.tui.screens.atlas import AtlasScreen
        from vista_tui.tui.screens.coverage import CoverageScreen
        from vista_tui.tui.screens.help import HelpScreen
        from vista_tui.tui.screens.map import MapScreen
        from vista_tui.tui.screens.stats import StatsScreen
        from vista_tui.tui.widgets.cluster_tree import ClusterTreeView
        from vista_tui.tui.widgets.contexts import ContextList
        from vista_tui.tui.widgets.latent_table import LatentTable

        if isinstance(self.screen, HelpScreen):
            return
        from vista_tui.tui.screens.matches import MatchesScreen
        from vista_tui.tui.screens.split import SplitScreen

        map_sections: list[tuple[str, type]] = [
            ("tree", ClusterTreeView),
            ("map", MapScreen),
            ("contexts", ContextList),
            ("matches", MatchesScreen),
            ("split", SplitScreen),
            ("stats", StatsScreen),
            ("coverage", CoverageScreen),
        ]
        atlas_sections: list[tuple[str, type]] = [("latents", LatentTable), ("atlas", AtlasScreen)]
        # The keys of the screen in view first.
        if isinstance(self.screen, AtlasScreen):
            sections = [*atlas_sections, ("app", VistaApp), *map_sections]
        else:
            sections = [*map_sections, ("app", VistaApp), *atlas_sections]
        self.push_screen(HelpScreen(sections))

    # -- failures: the one place ---------------------------------------------------------------

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every failed worker lands here: the app's own, and those screens and widgets forward.

        How loud depends on what failed: a map that cannot be opened gets an error screen over
        the picker, an unreadable map anywhere else an error screen, anything else a toast.
        """
        worker = event.worker
        error = worker.error
        if event.state != WorkerState.ERROR or error is None:
            return
        from vista_tui.tui.screens.error import ErrorScreen  # loaded with the first failure

        description = worker.description or worker.name
        if worker.group in ("open", "open-atlas"):
            gc.enable()  # no map or atlas to draw: see _freeze_heap
        message = str(error) if isinstance(error, MapError) else f"{type(error).__name__}: {error}"
        if worker.group == "open":
            if isinstance(self.screen, LoadingScreen):
                if self._map_below():
                    self.pop_screen()  # back to the map it was opened over
                    self._restore_map_below()
                elif self._atlas_below():
                    self.pop_screen()  # back to the latent browser it was opened from
                else:
                    self.action_pick_map()  # under the error: what to open instead
            self.push_screen(ErrorScreen("This map cannot be opened", message))
        elif worker.group == "open-atlas":
            if not _is_picker_screen(self.screen):
                self.action_pick_map()
            self.push_screen(ErrorScreen("This atlas cannot be opened", message))
        elif isinstance(error, MapError):
            self.push_screen(ErrorScreen(f"Could not {description}", message))
        else:
            self.notify(f"could not {description}: {sanitize(message, 300)}", severity="error", timeout=8)
