"""Corpus to model inputs: documents tokenized in groups, cut into chunks, batched by length.

A chunk is one model input (a document, or a max_length piece of a long one) with the
character span of each token, so that a kept context can show the document's own text. Chunks
are sorted by length within a window of batches, so batches pad little and the order stays
deterministic. `prefetch` runs all of this a few batches ahead in a thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from pipeline.corpus import Document

_SORT_WINDOW = 16
"""Chunks are sorted by length within windows of this many batches, so that batches pad little."""


def sort_window(batch_size: int) -> int:
    """Chunks per sorting window: a run of chunks cut at a multiple of it is batched exactly as in the whole
    stream (the atlas's engines shard the corpus there, so every shard sees bitwise the same batches)."""
    return batch_size * _SORT_WINDOW


_DOCS_PER_TOKENIZER_CALL = 64


@dataclass(slots=True)
class Chunk:
    """One model input: a document, or a max_length piece of a long one."""

    document: Document
    input_ids: np.ndarray
    real: np.ndarray
    """True for tokens that are harvested: not special, within the token budget."""
    offsets: np.ndarray
    """(n, 2) character span of each token in the document's text."""
    first_position: int
    """Index in the document of the chunk's first real token (for context ids)."""


def iter_chunks(
    documents: Iterable[Document], tokenizer: Any, max_length: int, max_tokens: int | None, counts: dict[str, int]
) -> Iterator[Chunk]:
    """Tokenize documents in groups (fast tokenizers batch well), cutting long ones into chunks."""
    counts.setdefault("documents", 0)
    counts.setdefault("tokens", 0)
    iterator = iter(documents)
    while True:
        group = _take(iterator, _DOCS_PER_TOKENIZER_CALL)
        if not group:
            return
        encoded = tokenizer(
            [document.text for document in group],
            truncation=True,
            max_length=max_length,
            return_overflowing_tokens=True,
            stride=0,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        positions = [0] * len(group)
        for i, doc_index in enumerate(encoded["overflow_to_sample_mapping"]):
            real = ~np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
            n_real = int(real.sum())
            if n_real == 0:
                continue
            if max_tokens is not None:
                left = max_tokens - counts["tokens"]
                if left <= 0:
                    return
                if n_real > left:
                    # The cut tokens still give the kept ones their context; they are not harvested.
                    real[np.flatnonzero(real)[left:]] = False
                    n_real = left
            if positions[doc_index] == 0:
                counts["documents"] += 1
            yield Chunk(
                document=group[doc_index],
                input_ids=np.asarray(encoded["input_ids"][i], dtype=np.int64),
                real=real,
                offsets=np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2),
                first_position=positions[doc_index],
            )
            positions[doc_index] += n_real
            counts["tokens"] += n_real


def _take(iterator: Iterator[Document], n: int) -> list[Document]:
    """The next `n` documents of `iterator` (fewer at its end)."""
    out: list[Document] = []
    for document in iterator:
        out.append(document)
        if len(out) == n:
            break
    return out


def iter_batches(chunks: Iterable[Chunk], batch_size: int) -> Iterator[list[Chunk]]:
    """Batches of chunks of similar length (sorted within a window of batches): little padding."""
    buffer: list[Chunk] = []
    for chunk in chunks:
        buffer.append(chunk)
        if len(buffer) >= batch_size * _SORT_WINDOW:
            yield from _sorted_batches(buffer, batch_size)
            buffer = []
    if buffer:
        yield from _sorted_batches(buffer, batch_size)


def _sorted_batches(buffer: list[Chunk], batch_size: int) -> Iterator[list[Chunk]]:
    """`buffer` cut into batches, longest chunks first."""
    ordered = sorted(buffer, key=lambda chunk: -len(chunk.input_ids))  # stable: deterministic
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


_T = TypeVar("_T")


def prefetch(items: Iterator[_T], depth: int = 4) -> Generator[_T, None, None]:
    """Iterate `items` in a background thread, `depth` ahead; its exceptions re-raise here.

    On a GPU the forward pass waits on the CPU's tokenizing and padding otherwise; the GPU
    kernels and the Rust tokenizer both release the GIL, so the two overlap.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        """Queue `message`, giving up (False) once the consumer has stopped."""
        while not stop.is_set():
            try:
                slots.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        """The thread's body: every item, then done, or the error that stopped it."""
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as error:  # handed to the consumer, which raises it
            put(("error", error))

    thread = threading.Thread(target=produce, name="vista-harvest-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()  # the consumer stopped (done, error, or abandoned): let the producer go
        thread.join(timeout=5)


def pad(batch: list[Chunk], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input_ids, attention_mask and the real-token mask of a batch, right-padded."""
    width = max(len(chunk.input_ids) for chunk in batch)
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(batch), width), dtype=np.int64)
    real = np.zeros((len(batch), width), dtype=bool)
    for row, chunk in enumerate(batch):
        n = len(chunk.input_ids)
        input_ids[row, :n] = chunk.input_ids
        attention[row, :n] = 1
        real[row, :n] = chunk.real
    return input_ids, attention, real


def pad_token_id(tokenizer: Any) -> int:
    """The id padding is written with: the tokenizer's pad token, else its end of sequence, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0
