"""The `vista` command: one module per command group (maps, triage, render, pipeline)."""

from vista_tui.cli.main import main

__all__ = ["main"]
