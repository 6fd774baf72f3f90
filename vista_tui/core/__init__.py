"""Headless logic shared by the TUI and the CLI: the annotation store, the triage session,
the render queue client, the map view model, the figures of the statistics and scores views,
and the sanitiser.

Never imports textual or the pipeline (a test checks it), so scripts and the pipeline can use it.
"""
