"""Corpus readers: text, JSONL, parquet, the stdlib docstrings, and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.corpus import (
    STDLIB_DOCSTRINGS,
    CorpusError,
    Document,
    ReadMeter,
    check_corpus,
    corpus_bytes,
    iter_documents,
    stdlib_files,
    stdlib_root,
)


def test_text_file_gives_one_document_per_paragraph(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph,\nstill first.\n\n\nSecond one.\n   \nThird.\n", encoding="utf-8")
    documents = list(iter_documents([str(path)]))
    assert documents == [
        Document(f"{path}:1", "First paragraph,\nstill first.", str(path)),
        Document(f"{path}:5", "Second one.", str(path)),
        Document(f"{path}:7", "Third.", str(path)),
    ]


def test_markdown_is_read_like_text(tmp_path: Path) -> None:
    path = tmp_path / "readme.md"
    path.write_text("# Title\n\nBody text.", encoding="utf-8")
    assert [d.text for d in iter_documents([str(path)])] == ["# Title", "Body text."]


def test_jsonl_takes_the_text_field_and_the_id_when_present(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [{"id": "a", "body": "alpha"}, {"body": "beta"}, {"body": "   "}, {"id": 7, "body": "gamma"}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    documents = list(iter_documents([str(path)], text_field="body"))
    assert [(d.doc_id, d.text) for d in documents] == [("a", "alpha"), (f"{path}:2", "beta"), ("7", "gamma")]


def test_jsonl_row_without_the_field_names_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "ok"}\n{"content": "no text field"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"rows\.jsonl:2 has no field 'text' \(its fields: content\).*--text-field"):
        list(iter_documents([str(path)]))


def test_jsonl_line_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"rows\.jsonl:2 is not valid JSON"):
        list(iter_documents([str(path)]))


def test_parquet_streams_in_batches_with_ids(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    n = 2500  # more than one read batch
    pq.write_table(pa.table({"text": [f"row {i}" if i % 100 else "" for i in range(n)]}), path, row_group_size=700)
    documents = list(iter_documents([str(path)]))
    assert len(documents) == n - n // 100
    assert documents[0] == Document(f"{path}:1", "row 1", str(path))
    assert documents[-1].doc_id == f"{path}:{n - 1}"

    with_ids = tmp_path / "with_ids.parquet"
    pq.write_table(pa.table({"id": ["x", "y"], "body": ["one", "two"]}), with_ids)
    assert [(d.doc_id, d.text) for d in iter_documents([str(with_ids)], text_field="body")] == [
        ("x", "one"),
        ("y", "two"),
    ]


def test_parquet_without_the_column_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"body": ["a"], "n": [1]}), path)
    with pytest.raises(CorpusError, match=r"has no column 'text' \(its columns: body, n\).*--text-field"):
        list(iter_documents([str(path)]))


def test_missing_file_fails_before_any_document_is_read(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("text", encoding="utf-8")
    stream = iter_documents([str(good), str(tmp_path / "missing.txt")])
    with pytest.raises(CorpusError, match=r"missing\.txt does not exist"):
        next(stream)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"unknown extension '\.csv'; supported: \.txt, \.md, \.jsonl, \.parquet"):
        list(iter_documents([str(path)]))


def test_empty_corpus_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"^corpus .*empty\.txt has no text; "):
        list(iter_documents([str(path)]))
    assert issubclass(CorpusError, ValueError)


def test_stdlib_docstrings_are_deterministic_and_named_by_qualname() -> None:
    first = list(islice(iter_documents([STDLIB_DOCSTRINGS]), 200))
    again = list(islice(iter_documents([STDLIB_DOCSTRINGS]), 200))
    assert first == again
    assert len({d.doc_id for d in first}) == len(first)
    ids = {d.doc_id for d in first}
    assert "__future__" in ids  # a module docstring: the module's name
    assert "__future__._Feature.getOptionalRelease" in ids  # a method's: module.qualname
    assert all(d.text.strip() and d.source == STDLIB_DOCSTRINGS for d in first)


def test_stdlib_files_skip_tests_gui_and_site_packages() -> None:
    root = stdlib_root()
    parts = {part for path in stdlib_files() for part in path.relative_to(root).parts[:-1]}
    assert not parts & {"test", "tests", "idlelib", "tkinter", "turtledemo", "site-packages"}


def test_stdlib_docstrings_never_import_the_modules() -> None:
    # A fresh interpreter: reading every docstring must not import what it reads (antigravity
    # opens a browser, turtle a window).
    script = (
        "import sys\n"
        "from pipeline.corpus import iter_documents\n"
        "n = sum(1 for _ in iter_documents(['python-stdlib-docstrings']))\n"
        "assert n > 3000, n\n"
        "imported = {'antigravity', 'turtle', 'this', 'webbrowser', 'smtplib', 'tkinter'} & set(sys.modules)\n"
        "assert not imported, imported\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr


# -- checking a corpus before the harvest, and measuring how far it is read --------------------


def test_check_corpus_reads_only_the_first_record_of_each_source(tmp_path: Path) -> None:
    """A later bad line is the harvest's to find; the first record, the field and emptiness are checked now."""
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "ok"}\nnot json, never read by the check\n', encoding="utf-8")
    check_corpus([str(good)])
    other_field = tmp_path / "other.jsonl"
    other_field.write_text('{"body": "text under another name"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"other\.jsonl:1 has no field 'text' \(its fields: body\).*--text-field"):
        check_corpus([str(good), str(other_field)])  # the second source too, not only the first
    check_corpus([str(other_field)], text_field="body")
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"body": ["a"]}), parquet)
    with pytest.raises(CorpusError, match=r"has no column 'text' \(its columns: body\)"):
        check_corpus([str(parquet)])


def test_check_corpus_refuses_a_missing_or_empty_corpus(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"^corpus .*empty\.txt has no text; "):
        check_corpus([str(empty)])
    with pytest.raises(CorpusError, match=r"missing\.jsonl does not exist"):
        check_corpus([str(empty), str(tmp_path / "missing.jsonl")])
    text = tmp_path / "text.txt"
    text.write_text("one paragraph", encoding="utf-8")
    check_corpus([str(empty), str(text)])  # one empty source in a corpus with text is fine


def test_the_meter_counts_the_bytes_read_up_to_the_corpus_size(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("\n\n".join(f"paragraph {i} " + "word " * 300 for i in range(60)), encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"text": "x" * 500 + str(i)}) for i in range(200)), encoding="utf-8")
    table = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(2500)]}), table, row_group_size=700)
    sources = [str(text), str(rows), str(table)]
    total = corpus_bytes(sources)
    assert total == sum(Path(source).stat().st_size for source in sources)
    meter = ReadMeter(total=total)
    seen = [meter.done for _ in iter_documents(sources, meter=meter)]
    assert seen == sorted(seen) and 0 < seen[0] < total  # it moves as the files are read, never back
    assert meter.done == total
    assert [d.text for d in iter_documents(sources)] == [d.text for d in iter_documents(sources, meter=ReadMeter())]


def test_the_stdlib_corpus_has_a_size_too() -> None:
    total = corpus_bytes([STDLIB_DOCSTRINGS])
    assert total == sum(path.stat().st_size for path in stdlib_files())
    meter = ReadMeter(total=total)
    for _ in islice(iter_documents([STDLIB_DOCSTRINGS], meter=meter), 50):
        pass
    assert 0 < meter.done < total
    assert corpus_bytes([STDLIB_DOCSTRINGS, "no-such-file.txt"]) is None
