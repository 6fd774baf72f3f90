"""A render, inline in the terminal, with what made it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from vista_tui.core.sanitize import sanitize


def describe_render(sidecar: dict[str, Any]) -> Text:
    """One or two lines on how an image was made; sketches are never passed off as renders."""
    kind = sidecar.get("kind", "diffusion")
    text = Text()
    if kind == "sketch":
        text.append("sketch", style="bold reverse yellow")
        text.append(" — drawn from the map, no diffusion model configured (set --model or $VISTA_DIFFUSION_MODEL)")
        return text
    text.append("diffusion render", style="bold reverse green")
    details = [
        f"model {sidecar.get('model', '?')}",
        f"seed {sidecar.get('seed', '?')}",
        f"{sidecar.get('steps', '?')} steps",
        f"guidance {sidecar.get('guidance', '?')}",
    ]
    if "width" in sidecar and "height" in sidecar:
        details.append(f"{sidecar['width']}×{sidecar['height']}")
    if "seconds" in sidecar:
        details.append(f"{float(sidecar['seconds']):.1f} s")
    text.append(" " + sanitize(" · ".join(details)))
    prompts = sidecar.get("prompts") or ([sidecar["prompt"]] if sidecar.get("prompt") else [])
    if prompts:
        shown = "; ".join(str(p) for p in prompts[:3]) + (f"; … {len(prompts) - 3} more" if len(prompts) > 3 else "")
        text.append("\nprompt: " + sanitize(shown, 300), style="italic")
    return text


class ImageScreen(ModalScreen[None]):
    """The image, drawn with the graphics the terminal supports (half cells in tmux)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,v", "dismiss", "Close"),
        Binding("o", "app.open_render", "Open outside", tooltip="Open in $VISTA_VIEWER or copy the path"),
    ]

    DEFAULT_CSS = """
    ImageScreen { align: center middle; }
    ImageScreen > Vertical { width: 95%; height: 95%; border: thick $accent; background: $surface; }
    ImageScreen #render-caption { height: auto; max-height: 3; padding: 0 1; }
    ImageScreen #render-path { height: 1; padding: 0 1; color: $text-muted; }
    ImageScreen #render-image { width: 1fr; height: 1fr; }
    """

    def __init__(self, path: Path, sidecar: dict[str, Any], image_class: type[Any]) -> None:
        super().__init__()
        self.path = path
        self.sidecar = sidecar
        self.image_class = image_class

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(describe_render(self.sidecar), id="render-caption")
            yield self.image_class(str(self.path), id="render-image")
            yield Static(Text(sanitize(str(self.path)) + "  · o: open outside · esc: close"), id="render-path")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
