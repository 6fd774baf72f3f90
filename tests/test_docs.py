"""The documentation points only at what a clone holds: every relative link, and every path it quotes as
code, resolves to a file in the repository (the README once sent readers to `../shared/DESIGN.md`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "ARCHITECTURE.md", "cache/README.md")
"""The pages a reader of a clone starts from."""
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
"""`[text](target)` and `![alt](target "title")`: the target."""
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
"""`[name]: target` definitions: the target."""
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
"""Code blocks and spans: what they hold is not a link."""
CODE_SPAN = re.compile(r"(?<!`)`([^`\s]+)`(?!`)")
"""An inline code span without whitespace: a path, when it looks like one (`quoted_paths`)."""
PATH_LIKE = re.compile(r"^(?:\.\.?/[\w./-]*|\w[\w.-]*(?:/[\w.-]+)+/?|\w[\w.-]*\.md)$")
"""`../x`, `./x`, `a/b…` (at least two segments) or `NAME.md`; placeholders (`<map>/…`, `~/…`) and options
(`--a/--b`) are not."""


def relative_targets(text: str) -> list[str]:
    """The relative link targets of a Markdown text, without their `#anchor` (URLs and bare anchors left out)."""
    prose = CODE.sub("", text)
    targets = [*INLINE_LINK.findall(prose), *REFERENCE_LINK.findall(prose)]
    relative = [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t) and not t.startswith("#")]
    return [t.split("#", 1)[0] for t in relative]


def quoted_paths(text: str) -> list[str]:
    """The inline code spans of a Markdown text that name a file or folder by a relative path."""
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return [span for span in CODE_SPAN.findall(without_blocks) if PATH_LIKE.match(span)]


def tracked_files() -> set[Path] | None:
    """The files git tracks in this checkout (resolved), or None outside a git checkout."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout.decode("utf-8")
    except (OSError, subprocess.CalledProcessError):
        return None
    return {(ROOT / name).resolve() for name in listing.split("\0") if name}


def test_relative_targets_finds_links_and_skips_urls_anchors_and_code() -> None:
    text = (
        'See [a](ARCHITECTURE.md#data-flow), ![img](docs/x.png "t"), [web](https://example.org), '
        "[here](#keys) and `[not](a-link.md)`.\n\n[ref]: ../shared/DESIGN.md\n```\n[no](code.md)\n```\n"
    )
    assert relative_targets(text) == ["ARCHITECTURE.md", "docs/x.png", "../shared/DESIGN.md"]


def test_quoted_paths_are_paths_not_commands_or_placeholders() -> None:
    text = (
        "The method: `../shared/DESIGN.md`; see `pipeline/build.py`, `vista_tui/cli/`, `./cache`, "
        "`NOTES.md`, not `core/`, `--price-in/--price-out`, `<map>/renders/`, `~/.cache/vista-tui`, `vista build --help` or `/`.\n"
        "```sh\ncat `x/y.md`\n```\n"
    )
    assert quoted_paths(text) == ["../shared/DESIGN.md", "pipeline/build.py", "vista_tui/cli/", "./cache", "NOTES.md"]


def in_repository(page: Path, target: str, tracked: set[Path] | None) -> bool:
    """`target`, relative to the page's folder or to the repository root, is a file or folder a clone holds."""
    for base in (page.parent, ROOT):
        path = (base / target).resolve()
        if path.is_relative_to(ROOT) and path.exists():
            return tracked is None or not path.is_file() or path in tracked
    return False


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_relative_link_resolves_to_a_file_in_the_repository(document: str) -> None:
    page = ROOT / document
    tracked = tracked_files()
    broken = [
        target
        for target in relative_targets(page.read_text(encoding="utf-8"))
        if not (page.parent / target).resolve().is_relative_to(ROOT) or not in_repository(page, target, tracked)
    ]
    assert not broken, f"{document} links to what a clone does not hold: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_path_quoted_as_code_is_in_the_repository(document: str) -> None:
    page = ROOT / document
    tracked = tracked_files()
    missing = [
        path for path in quoted_paths(page.read_text(encoding="utf-8")) if not in_repository(page, path, tracked)
    ]
    assert not missing, f"{document} names paths a clone does not hold: {missing}"
