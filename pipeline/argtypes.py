"""Argument types and options shared by the pipeline's commands (`build`, `demo`).

A module of its own so that `pipeline.cli` and the step modules that declare their own
options (`pipeline.demo.run`) can both import it without importing each other.
"""

from __future__ import annotations

import argparse


def int_list(text: str) -> list[int]:
    """`--latents 3,18, 42` → [3, 18, 42]; an argparse error naming the text otherwise."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"latents must be integers separated by commas, got {text!r}") from None


def add_quantile_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--quantiles Q` and `--per-quantile K`: the harvest's random examples below the top-N."""
    parser.add_argument(
        "--quantiles",
        type=int,
        default=5,
        metavar="Q",
        help="random examples from each of Q equal-width activation intervals (0: none) (default: 5)",
    )
    parser.add_argument(
        "--per-quantile", type=int, default=4, metavar="K", help="examples drawn per interval (default: 4)"
    )


def add_negatives_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--negatives N`: the harvest's non-activating windows per latent, for the explanation scorers."""
    parser.add_argument(
        "--negatives",
        type=int,
        default=200,
        metavar="N",
        help="windows kept per latent where it is 0 on every token, for `vista score` (0: none) (default: 200)",
    )
