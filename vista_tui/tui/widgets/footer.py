"""The explorer's footer: Textual's own, with each key marked by its action for the CSS.

Textual's footer lists the focused pane's keys, then the screen's, then the app's, and cuts off
what does not fit. At 80 columns that was `? Help` and `q Quit`, the two keys a newcomer needs.
Each key here carries a class named after its action (`-action-help`, `-action-app-focus-next`),
so that app.tcss can drop, by terminal width, the keys that the help and the palette list anyway.
"""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # not exported by textual.widgets; the footer's own keys


def action_class(action: str) -> str:
    """The class of a footer key bound to `action`: `app.focus_next` → `-action-app-focus-next`."""
    return "-action-" + re.sub(r"[^a-z0-9]+", "-", action.lower()).strip("-")


class ActionFooter(Footer):
    """Textual's footer, each key tagged with `action_class` of its action."""

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                widget.add_class(action_class(widget.action))
            yield widget
