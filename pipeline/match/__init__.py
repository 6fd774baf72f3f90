"""Matching the latents of two SAEs by the directions they read and write (`vista match`, `--also-sae`)."""
