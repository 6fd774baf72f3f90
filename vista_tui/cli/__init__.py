"""The `vista` command: `main` parses and dispatches; each command group is one module.

maps (explore, list, summary), triage (annotate, triage-status), export, explanations
(import-explanations), render, pipeline (build, demo, label: run in a child process); every
command that reads a map opens it through `opening`, and fails through `console.fail`.
"""

from vista_tui.cli.main import main

__all__ = ["main"]
