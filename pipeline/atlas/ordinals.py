"""Token keys: where a real token sits in the corpus, as one int64 whose order is corpus order.

`key = doc_index << TOKEN_BITS | token_index`: the document's index in the corpus (counted from
0 over the documents the corpus reader yields) and the token's index among that document's real
tokens (the position its context id names). Sorting keys sorts tokens in corpus order, and a
shard — a contiguous run of documents — computes its tokens' keys without knowing how many
tokens the shards before it held, which a running token count could not.

Ties. Among exactly equal activations the single-latent harvest (`pipeline.harvest.topn`) keeps
the token it processed first. It processes chunks in length-sorted batches (`batches.iter_batches`
sorts within windows of 16 batches, longest first, stable), so its order is corpus order for
tokens of one chunk and for chunks of equal length — verbatim repeats of a document are equal
chunks — but not for an exact tie between chunks of different lengths in the same sort window.
The atlas breaks ties by key (corpus order) everywhere, the only order a shard can know; the two
harvests can differ only there, in which of two bitwise-equal activations of different inputs is
kept (a decoder model seeing the same prefix in a long and a short document is the usual case).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.corpus import Document
from pipeline.harvest.config import HarvestError

TOKEN_BITS = 24
"""Bits of the token index: documents of up to 2**24 (16,777,216) real tokens."""
MAX_TOKENS_PER_DOCUMENT = 1 << TOKEN_BITS
MAX_DOCUMENTS = 1 << (63 - TOKEN_BITS)
EMPTY_KEY = np.iinfo(np.int64).max
"""The key of an empty top-N slot: after every real token."""


@dataclass(frozen=True, slots=True)
class IndexedDocument(Document):
    """A document that knows its index in the corpus (the chunker passes documents through untouched)."""

    index: int = 0


def indexed(documents: Iterable[tuple[int, Document]]) -> Iterator[IndexedDocument]:
    """The documents as IndexedDocument, for `batches.iter_chunks`; HarvestError past MAX_DOCUMENTS."""
    for doc_index, document in documents:
        if not 0 <= doc_index < MAX_DOCUMENTS:
            raise HarvestError(f"document index {doc_index} is outside 0..{MAX_DOCUMENTS - 1}; the corpus is too large")
        yield IndexedDocument(document.doc_id, document.text, document.source, doc_index)


def pack(doc_index: int | np.ndarray, token_index: int | np.ndarray) -> np.ndarray:
    """Keys of tokens by document index and token index (arrays broadcast)."""
    return (np.asarray(doc_index, dtype=np.int64) << TOKEN_BITS) | np.asarray(token_index, dtype=np.int64)


def unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(document index, token index) of each key."""
    keys = np.asarray(keys, dtype=np.int64)
    return keys >> TOKEN_BITS, keys & (MAX_TOKENS_PER_DOCUMENT - 1)


def chunk_keys(doc_index: int, doc_id: str, first_position: int, n_real: int) -> np.ndarray:
    """Keys of a chunk's real tokens; HarvestError (one line) when the document is longer than keys allow."""
    if first_position + n_real > MAX_TOKENS_PER_DOCUMENT:
        raise HarvestError(
            f"document {doc_id} has more than {MAX_TOKENS_PER_DOCUMENT:,} tokens, more than the atlas can number;"
            " split it into smaller documents"
        )
    return pack(doc_index, np.arange(first_position, first_position + n_real, dtype=np.int64))
