"""Where every `vista` command writes, and the one way it fails: a single `error: …` line and an exit code.

Rich consoles rather than `print`, so that a terminal shows the prefix in colour while a pipe
or a log gets plain text; the message itself goes out as plain `Text`, never as markup, because
it quotes paths, ids and file contents (`vista-tui[pipeline]` must not read as a style tag).
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

EXIT_FAILED = 1
"""The work was attempted and failed, or failed in part (a render; `vista label` when some nodes failed)."""
EXIT_BAD_INPUT = 2
"""Nothing was done: a bad argument, an unknown or unreadable map, a store that cannot be written (and
`vista label` when no node could be labelled: an LLM endpoint that is down or refuses, or every node failed)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as a shell reports SIGINT."""

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def fail(message: object, code: int = EXIT_BAD_INPUT) -> int:
    """Print `error: MESSAGE` as one line on stderr (whitespace collapsed) and return `code` to exit with."""
    stderr.print(Text.assemble(("error:", "bold red"), " ", " ".join(str(message).split())), soft_wrap=True)
    return code
