"""Scroll views sized by the layout, whose content length changes without a new layout."""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive


def virtual_size_without_relayout(repaint: bool = True) -> Reactive[Size]:
    """A `virtual_size` for a scroll view whose size comes from the CSS (e.g. `height: 1fr`).

    Assign it to `virtual_size` in the class body. Textual re-lays out the whole screen whenever
    a widget's `virtual_size` changes, which on a wide terminal costs a frame of its own on every
    change of node. With this, the content length only moves the scrollbar: `_scroll_update`
    (which ScrollView and OptionList call after changing the size) refreshes it, and when the
    scrollbar appears or goes, `show_vertical_scrollbar` (a layout reactive) still asks for the
    layout that this needs. Only for widgets whose height and width do not depend on content.
    (A mixin class would not do: Textual gathers CSS, bindings and component classes along the
    first base of each class only.)

    `repaint=False`: a new length does not repaint the widget either, for a widget that repaints
    the lines a change of length moves itself (the cluster tree's fold and unfold).
    """
    return Reactive(Size(0, 0), layout=False, repaint=repaint)
