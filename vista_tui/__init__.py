"""VISTA-TUI: a terminal explorer of what an SAE latent represents."""

__version__ = "0.1.0"
