"""A change from the annotation history, in words: what the explorer's `u` and `vista annotate --undo` print.

One wording for both, so that a script and a person at the keyboard read the same thing.
"""

from __future__ import annotations

from vista_tui.core.annotations import HistoryEntry
from vista_tui.core.sanitize import sanitize


def history_value(value: object) -> str:
    """A history value as shown: quoted, cut to 40 characters, '∅' for nothing (tags stay their JSON text)."""
    if value is None or value == "" or value == ():
        return "∅"
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    return repr(sanitize(str(value), 40))


def undo_message(title: str, revert: HistoryEntry) -> str:
    """'undid FIELD of TITLE: UNDONE → RESTORED': what the undo changed, from the value it took back to the
    value it put back (`revert` is the undo's own entry: its old is the value undone, its new the one restored)."""
    return f"undid {revert.field} of {title}: {history_value(revert.old)} → {history_value(revert.new)}"
