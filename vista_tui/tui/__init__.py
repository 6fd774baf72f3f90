"""The Textual app: app, screens, widgets and their stylesheet. Only `vista_tui.cli` imports it."""
