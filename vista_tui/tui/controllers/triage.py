"""Triage from the keyboard: status keys, tags, notes, undo, n/N to the next unreviewed node, the filter.

Every write goes through the map's `TriageSession` and is committed before the screen says
"saved". What shows annotations (the status glyphs in the tree, the meter in the header, the
note line under the labels) is redrawn here after each change.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual.app import SuspendNotSupported
from textual.widgets import Static

from vista_tui.core.annotations import AnnotationError
from vista_tui.core.history import undo_message
from vista_tui.core.sanitize import sanitize
from vista_tui.core.triage import TriageFilter, TriageSession, clean_note, next_in_tree_order, parse_filter
from vista_tui.tui.controllers import MapView
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView


class TriageController:
    """The map screen's triage: what the keys 1…9 t a A u f and n/N (without a search) do."""

    def __init__(self, view: MapView, session: TriageSession | None) -> None:
        self.view = view
        self.session = session
        """The map's annotations; None when the screen was opened without triage."""
        self.filter: TriageFilter | None = None
        """The status or tag the tree is filtered by, if any."""

    @property
    def _tree(self) -> ClusterTreeView:
        return self.view.query_one("#tree", ClusterTreeView)

    # -- what shows annotations ----------------------------------------------------------------

    def refresh(self, node_id: str | None = None) -> None:
        """Redraw what shows annotations: status glyphs (one node, or all), the meter, the note."""
        tree = self._tree
        meter = self.view.query_one("#triage-meter", Static)
        session = self.session
        if session is None:
            meter.update("")
            return
        ids = [node_id] if node_id is not None else list(self.view.model.nodes)
        for one in ids:
            tree.status_glyphs[one] = session.glyph(one)
        tree.rebuild()
        text = meter_text(session)
        if session.error is not None:
            text += " · read-only"
        meter.update(Text(text))
        self.show_annotation()

    def show_annotation(self) -> None:
        """The selected node's status, tags and note under its labels (hidden when it has none)."""
        panel = self.view.query_one("#triage-note", Static)
        selected = self.view.selected
        annotation = self.session.get(selected) if self.session is not None and selected else None
        if annotation is None:
            if panel.has_class("-visible"):  # a hidden, empty line needs no update (each one re-lays out)
                panel.remove_class("-visible")
                panel.update("")
            return
        line = Text()
        line.append(sanitize(annotation.status), "bold")
        for tag in annotation.tags:
            line.append(f" #{sanitize(tag)}", "italic")
        if annotation.note:
            line.append(" · note: ")
            line.append(sanitize(annotation.note, 400))
        panel.update(line)
        panel.add_class("-visible")

    # -- writes ----------------------------------------------------------------------------------

    def _writable(self) -> TriageSession | None:
        """The session if writes are allowed, else None after saying why."""
        session = self.session
        if session is None:
            self.view.notify("triage is off: no annotation store for this map", severity="warning", timeout=4)
            return None
        if not session.writable:
            self.view.notify(f"triage is off: {session.error}", severity="warning", timeout=6)
            return None
        return session

    def _save(self, node_id: str, what: str, write: Callable[[], object]) -> bool:
        """Run a session write; say "saved" only once it returned (committed), else its one-line error."""
        title = self.view.model.title(node_id)
        try:
            write()
        except (AnnotationError, ValueError, KeyError) as error:  # the store refuses bad values with ValueError
            if isinstance(error, KeyError):
                error = AnnotationError(f"{title} has no annotation yet")
            self.view.notify(f"not saved: {error}", severity="error", timeout=8)
            return False
        self.refresh(node_id)
        self.view.notify(f"saved: {title} {what}", timeout=2)
        return True

    def set_status(self, number: int) -> None:
        """`1`…`9`: the selected node's status becomes the configured status at that position."""
        session, node_id = self._writable(), self.view.selected
        if session is None or node_id is None:
            return
        if not 1 <= number <= len(session.statuses):
            count = len(session.statuses)
            self.view.notify(f"no status {number}: there are {count} (1…{count})", timeout=3)
            return
        status = session.statuses[number - 1]
        self._save(node_id, f"→ {status}", lambda: session.set_status(node_id, status))

    def tag(self) -> None:
        """`t`: add a tag (or `-tag` to remove one) in a dialog that completes existing tags."""
        session, node_id = self._writable(), self.view.selected
        if session is None or node_id is None:
            return
        annotation = session.get(node_id)
        own = list(annotation.tags) if annotation is not None else []
        suggestions = [*session.tags(), *(f"-{tag}" for tag in own)]
        current = f" (now: {', '.join(own)})" if own else ""
        from vista_tui.tui.dialogs import LineDialog  # imported after the first frame (MapScreen)

        dialog = LineDialog(
            f"Tag {self.view.model.title(node_id)}{current}",
            "Enter adds · -tag removes · → accepts the completion · esc cancels",
            suggestions,
            placeholder="tag, or -tag to remove",
        )
        self.view.app.push_screen(dialog, lambda value: self._tag_entered(node_id, value))

    def _tag_entered(self, node_id: str, value: str | None) -> None:
        tag = (value or "").strip()
        session = self.session
        if not tag or session is None or session.store is None:
            return
        if tag.startswith("-"):
            name = tag[1:].strip()
            self._save(node_id, f"untagged {name}", lambda: session.remove_tag(node_id, name))
        else:
            self._save(node_id, f"tagged {tag}", lambda: session.add_tag(node_id, tag))

    def note(self) -> None:
        """`a`: edit the note in a dialog prefilled with it."""
        session, node_id = self._writable(), self.view.selected
        if session is None or node_id is None:
            return
        annotation = session.get(node_id)
        from vista_tui.tui.dialogs import NoteDialog  # imported after the first frame (MapScreen)

        dialog = NoteDialog(f"Note on {self.view.model.title(node_id)}", annotation.note if annotation else "")
        self.view.app.push_screen(dialog, lambda value: self._note_entered(node_id, value))

    def _note_entered(self, node_id: str, note: str | None) -> None:
        session = self.session
        if note is None or session is None or session.store is None:
            return
        annotation = session.get(node_id)
        if annotation is not None and annotation.note == clean_note(note):
            self.view.notify("note unchanged", timeout=2)
            return
        self._save(node_id, "note", lambda: session.set_note(node_id, note))

    def note_in_editor(self) -> None:
        """`A`: edit the note in $EDITOR (the TUI suspends while it runs)."""
        session, node_id = self._writable(), self.view.selected
        if session is None or node_id is None:
            return
        annotation = session.get(node_id)
        try:
            with self.view.app.suspend():
                note = run_editor(annotation.note if annotation else "")
        except SuspendNotSupported:
            self.view.notify("this terminal cannot hand over to $EDITOR — a edits the note here", severity="warning")
            return
        except (OSError, subprocess.CalledProcessError) as error:
            self.view.notify(f"editor failed: {error}", severity="error", timeout=8)
            return
        self.view.refresh(layout=True)
        self._note_entered(node_id, note)

    def undo(self) -> None:
        """`u`: undo your latest triage change."""
        session = self._writable()
        if session is None:
            return
        try:
            entry = session.undo()
        except (AnnotationError, ValueError) as error:
            self.view.notify(f"not undone: {error}", severity="error", timeout=8)
            return
        if entry is None:
            self.view.notify("nothing to undo", timeout=2)
            return
        if entry.node_id in self.view.model.nodes:
            self.refresh(entry.node_id)
            title = self.view.model.title(entry.node_id)
        else:
            title = entry.node_id[:12]
        self.view.notify(undo_message(title, entry), timeout=4)

    # -- n/N and the filter ----------------------------------------------------------------------

    def jump_unreviewed(self, step: int) -> None:
        """n/N without a search: the next/previous unreviewed node in tree order (within the filter), wrapping."""
        current = self.view.selected
        among = (self._tree.shown or set()) if self.filter is not None else None
        if self.session is not None:
            target = self.session.next_unreviewed(current, step, among)
        else:  # no annotations: every node is unreviewed
            order = self.view.model.walk()
            wanted = [n for n in order if n != current and (among is None or n in among)]
            target = next_in_tree_order(order, wanted, current, step)
        if target is None:
            self.view.notify("no unreviewed node left — every node has a status", timeout=3)
            return
        self.view.jump_to(target)

    def ask_filter(self) -> None:
        """`f`: show only nodes with a status or tag; empty clears."""
        session = self.session
        if session is None or session.store is None:
            self._writable()
            return
        suggestions = [*(f"status:{s}" for s in session.statuses), *(f"tag:{t}" for t in session.tags())]
        from vista_tui.tui.dialogs import LineDialog  # imported after the first frame (MapScreen)

        dialog = LineDialog(
            "Filter the tree",
            "status:<name> or tag:<name> · empty shows every node · esc cancels",
            suggestions,
            value=str(self.filter or ""),
            placeholder="status:junk, tag:verb",
        )
        self.view.app.push_screen(dialog, self._filter_entered)

    def _filter_entered(self, value: str | None) -> None:
        if value is None or self.session is None:
            return
        try:
            wanted = parse_filter(value, self.session.statuses)
        except ValueError as error:
            self.view.notify(str(error), severity="error", timeout=6)
            return
        self.apply_filter(wanted)

    def apply_filter(self, wanted: TriageFilter | None) -> None:
        """Filter the tree (kept as it is until the next filter, so a node just triaged does not vanish)."""
        tree = self._tree
        self.filter = wanted
        if wanted is None or self.session is None:
            tree.filter(None)
        else:
            matches = self.session.matching(wanted)
            tree.filter(matches)
            if not matches:
                self.view.notify(f"no node has {sanitize(str(wanted))}", severity="warning", timeout=3)
            else:
                self.view.notify(
                    f"{len(matches)} nodes with {sanitize(str(wanted))} — esc or empty f clears", timeout=3
                )
        self.view.update_tree_title()


def meter_text(session: TriageSession) -> str:
    """'triage 12/88 · interpretable 5 · junk 3': reviewed / every node (the root too), then per status."""
    progress = session.progress()
    reviewed = {s: n for s, n in progress.counts.items() if n and s != session.unreviewed}
    order = [s for s in session.statuses if s in reviewed] + sorted(s for s in reviewed if s not in session.statuses)
    return " · ".join([f"triage {progress.reviewed}/{progress.total}", *(f"{s} {reviewed[s]}" for s in order)])


def run_editor(note: str) -> str:
    """Run $VISUAL, else $EDITOR, else vi, on a temp file holding `note`; the edited note.

    Separate from the action so tests can run it (and the action, with `app.suspend` replaced)
    without a real terminal. A trailing newline the editor adds is dropped.
    """
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="vista-note-") as folder:
        path = Path(folder) / "note.md"
        path.write_text(note, encoding="utf-8")
        subprocess.run([*shlex.split(editor), str(path)], check=True)
        return path.read_text(encoding="utf-8").rstrip("\n")
