"""Corpora for the harvest: text files, JSONL, parquet, and the docstrings of Python's stdlib.

Every reader streams: documents come one at a time, in a deterministic order, so a
corpus far larger than memory can be harvested. Only the standard library and pyarrow.
"""

from __future__ import annotations

import ast
import json
import os
import sysconfig
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

STDLIB_DOCSTRINGS = "python-stdlib-docstrings"
"""Source name of the built-in corpus: the docstrings of the running Python's standard library."""

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED = ", ".join((*TEXT_SUFFIXES, *JSONL_SUFFIXES, *PARQUET_SUFFIXES, STDLIB_DOCSTRINGS))

# Directories of the stdlib whose docstrings are not prose worth mapping: tests (thousands of
# near-identical test docstrings), GUI demos, vendored wheels, third-party packages, and the
# ~100 generated codec modules of `encodings` (one boilerplate docstring each).
_STDLIB_SKIP_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "encodings",
        "lib-dynload",
        "__pycache__",
        "__phello__",
    }
)

_PARQUET_BATCH_ROWS = 1024


class CorpusError(ValueError):
    """A corpus that cannot be read; the message is one line saying what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class Document:
    """One text of the corpus, named so that a context can be traced back to it."""

    doc_id: str
    """Where the text is: "path:line" for text files, the "id" field or "path:row" otherwise,
    "module.qualname" for stdlib docstrings."""
    text: str
    source: str = ""
    """The corpus source the document came from (a path, or the special source name)."""


@dataclass
class ReadMeter:
    """How far a stream of documents has read its corpus: bytes of its files, of their total.

    The harvest's truthful progress when no token budget bounds it. The readers move it as they
    read (a text file by the bytes its decoder has taken, a parquet file by the share of its rows
    read), so it runs a tokenizer batch or two ahead of the model, never behind.
    """

    total: int | None = None
    """Bytes of every source (`corpus_bytes`); None when a size is unknown."""
    done: int = 0
    _base: int = 0

    def begin(self) -> None:
        """A new source starts: its positions count from the bytes read so far."""
        self._base = self.done

    def at(self, position: int) -> None:
        """The current source has been read up to byte `position`."""
        self.done = self._base + position


def iter_documents(
    sources: Sequence[str], text_field: str = "text", meter: ReadMeter | None = None
) -> Iterator[Document]:
    """Stream the documents of every source in order; raise CorpusError when there is nothing to read.

    Sources are paths (.txt/.md: one document per blank-line-separated paragraph; .jsonl: one
    object per line, text in `text_field`; .parquet: column `text_field`) or the special name
    `python-stdlib-docstrings`. Empty texts are skipped. `meter`, when given, follows the bytes read.
    """
    # Fail on a missing or unsupported source before streaming the first one, not an hour in.
    sources = _checked_sources(sources)
    n_documents = 0
    for source in sources:
        if meter is not None:
            meter.begin()
        for document in _iter_source(source, text_field, meter):
            n_documents += 1
            yield document
    if n_documents == 0:
        raise _no_text(sources, text_field)


def check_corpus(sources: Sequence[str], text_field: str = "text") -> None:
    """Raise CorpusError now for what a harvest would otherwise find only after loading its model.

    Each source must exist, be of a supported kind and give its first document (a JSONL or
    parquet source: with `text_field` holding text), and the corpus must hold some text.
    Reads each source up to its first document only: an empty one to its end.
    """
    sources = _checked_sources(sources)
    found = False
    for source in sources:
        with closing(_iter_source(source, text_field, None)) as documents:
            found = next(documents, None) is not None or found
    if not found:
        raise _no_text(sources, text_field)


def _checked_sources(sources: Sequence[str] | str) -> Sequence[str]:
    """The sources (a lone string is one), each one there and of a supported kind; CorpusError otherwise."""
    if isinstance(sources, str):
        sources = (sources,)
    if not sources:
        raise CorpusError("no corpus given; pass at least one file or python-stdlib-docstrings")
    for source in sources:
        _check_source(source)
    return sources


def corpus_bytes(sources: Sequence[str]) -> int | None:
    """Bytes the corpus's readers will read: its files' sizes (the stdlib's .py files for its docstrings).

    None when a size cannot be read: the progress then has no total.
    """
    total = 0
    try:
        for source in sources:
            files = stdlib_files() if source == STDLIB_DOCSTRINGS else [Path(source)]
            total += sum(path.stat().st_size for path in files)
    except OSError:
        return None
    return total


def _no_text(sources: Sequence[str], text_field: str) -> CorpusError:
    """The error of a corpus without a single document."""
    return CorpusError(
        f"corpus {', '.join(sources)} has no text; check the files are not empty"
        f" (and, for JSONL/parquet, that the {text_field!r} field holds the text)"
    )


def _check_source(source: str) -> None:
    if source == STDLIB_DOCSTRINGS:
        return
    path = Path(source)
    if not path.exists():
        raise CorpusError(f"corpus file {source} does not exist; check the path (supported: {SUPPORTED})")
    if path.is_dir():
        raise CorpusError(f"corpus {source} is a directory; pass its files one by one (supported: {SUPPORTED})")
    if path.suffix.lower() not in (*TEXT_SUFFIXES, *JSONL_SUFFIXES, *PARQUET_SUFFIXES):
        raise CorpusError(
            f"corpus file {source} has an unknown extension {path.suffix or '(none)'!r}; supported: {SUPPORTED}"
        )


def _iter_source(source: str, text_field: str, meter: ReadMeter | None) -> Generator[Document, None, None]:
    """The documents of one source, by its kind."""
    if source == STDLIB_DOCSTRINGS:
        return iter_stdlib_docstrings(meter=meter)
    suffix = Path(source).suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return _iter_text_file(source, meter)
    if suffix in JSONL_SUFFIXES:
        return _iter_jsonl(source, text_field, meter)
    return _iter_parquet(source, text_field, meter)


def _iter_text_file(source: str, meter: ReadMeter | None = None) -> Generator[Document, None, None]:
    """One document per paragraph (lines up to a blank line), named by its first line number."""
    paragraph: list[str] = []
    first_line = 0
    try:
        with open(source, encoding="utf-8", errors="replace") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    if not paragraph:
                        first_line = line_number
                    paragraph.append(line.rstrip("\r\n"))
                elif paragraph:
                    _mark(meter, handle)
                    yield Document(f"{source}:{first_line}", "\n".join(paragraph), source)
                    paragraph = []
            _mark(meter, handle)
    except OSError as error:
        raise CorpusError(f"corpus file {source} cannot be read ({error.strerror or error})") from None
    if paragraph:
        yield Document(f"{source}:{first_line}", "\n".join(paragraph), source)


def _mark(meter: ReadMeter | None, handle: TextIO) -> None:
    """Move `meter` to the bytes the text decoder of `handle` has taken from its file."""
    if meter is not None:
        # The binary buffer's position: TextIOWrapper.tell() is refused while the file is iterated.
        meter.at(handle.buffer.tell())


def _iter_jsonl(source: str, text_field: str, meter: ReadMeter | None = None) -> Generator[Document, None, None]:
    """One document per JSON object line, its text in `text_field`; doc ids from "id", else "path:line"."""
    try:
        handle = open(source, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below; generator
    except OSError as error:
        raise CorpusError(f"corpus file {source} cannot be read ({error.strerror or error})") from None
    with handle:
        for row_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(
                    f"{source}:{row_number} is not valid JSON ({error.msg}); fix or drop that line"
                ) from None
            if not isinstance(row, dict):
                raise CorpusError(f"{source}:{row_number} is not a JSON object; each line must be one object")
            if text_field not in row:
                fields = ", ".join(sorted(map(str, row))) or "none"
                raise CorpusError(
                    f"{source}:{row_number} has no field {text_field!r} (its fields: {fields});"
                    " pass the field that holds the text with --text-field"
                )
            text = row[text_field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise CorpusError(
                    f"{source}:{row_number} field {text_field!r} is a {type(text).__name__}, not text;"
                    " pass the field that holds the text with --text-field"
                )
            if not text.strip():
                continue
            doc_id = str(row["id"]) if row.get("id") is not None else f"{source}:{row_number}"
            _mark(meter, handle)
            yield Document(doc_id, text, source)
        _mark(meter, handle)


def _iter_parquet(source: str, text_field: str, meter: ReadMeter | None = None) -> Generator[Document, None, None]:
    """Rows of a parquet file, read in batches so that a large file streams; doc ids "path:row" (0-based)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as error:
        raise CorpusError(f"corpus file {source} is not a readable parquet file ({error})") from None
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise CorpusError(
            f"{source} has no column {text_field!r} (its columns: {', '.join(names) or 'none'});"
            " pass the column that holds the text with --text-field"
        )
    column_type = parquet.schema_arrow.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise CorpusError(
            f"{source} column {text_field!r} is {column_type}, not text; pass the column that holds the text"
            " with --text-field"
        )
    columns = [text_field] + (["id"] if "id" in names and text_field != "id" else [])
    row = 0
    n_rows, size = max(parquet.metadata.num_rows, 1), Path(source).stat().st_size
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns):
            if meter is not None:
                # Columns are read a batch at a time, not byte by byte: the share of rows read.
                meter.at(size * min(row + batch.num_rows, n_rows) // n_rows)
            texts = batch.column(text_field).to_pylist()
            ids = batch.column("id").to_pylist() if "id" in batch.schema.names and text_field != "id" else None
            for i, text in enumerate(texts):
                if text and text.strip():
                    doc_id = str(ids[i]) if ids is not None and ids[i] is not None else f"{source}:{row + i}"
                    yield Document(doc_id, text, source)
            row += len(texts)
    except (pa.ArrowException, OSError) as error:
        raise CorpusError(f"corpus file {source} could not be read past row {row} ({error})") from None


# -- the stdlib docstrings -----------------------------------------------------------------


def stdlib_root() -> Path:
    """Where the running Python's standard library lives."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The stdlib's .py files worth reading, in sorted order (see _STDLIB_SKIP_DIRS)."""
    root = stdlib_root() if root is None else root
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        # Sorting in place makes os.walk visit in a deterministic order.
        subdirs[:] = sorted(d for d in subdirs if d not in _STDLIB_SKIP_DIRS and not d.startswith("config-"))
        for name in sorted(files):
            if name.endswith(".py") and not name.startswith("_sysconfigdata"):
                found.append(Path(directory) / name)
    return found


def iter_stdlib_docstrings(root: Path | None = None, meter: ReadMeter | None = None) -> Generator[Document, None, None]:
    """Docstrings of the stdlib, found by parsing its source with `ast` — never by importing it
    (importing `antigravity` opens a browser; others start threads or touch the terminal).

    Doc ids are "module.qualname" ("module" for a module docstring); a name defined twice
    (e.g. in both branches of an `if`) gets "#2", "#3", … so ids stay unique.
    """
    root = stdlib_root() if root is None else root
    for path in stdlib_files(root):
        relative = path.relative_to(root).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        module = ".".join(parts)
        try:
            code = path.read_bytes()
            if meter is not None:
                meter.done += len(code)
            tree = ast.parse(code, filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # a file this Python cannot parse (e.g. a deliberately broken sample): skip it
        seen: dict[str, int] = {}
        for qualname, docstring in _docstrings(tree, module):
            count = seen.get(qualname, 0) + 1
            seen[qualname] = count
            doc_id = qualname if count == 1 else f"{qualname}#{count}"
            yield Document(doc_id, docstring, STDLIB_DOCSTRINGS)


_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, str]]:
    docstring = ast.get_docstring(tree, clean=True)
    if docstring and docstring.strip():
        yield module, docstring
    yield from _walk_definitions(tree.body, module)


def _walk_definitions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, str]]:
    """Definitions in source order, also inside if/try/with blocks and nested definitions."""
    for statement in body:
        if isinstance(statement, _Definition):
            qualname = f"{prefix}.{statement.name}"
            docstring = ast.get_docstring(statement, clean=True)
            if docstring and docstring.strip():
                yield qualname, docstring
            yield from _walk_definitions(statement.body, qualname)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(statement, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt | ast.excepthandler):
                    yield from _walk_definitions(block, prefix)  # type: ignore[arg-type]
