"""Token keys: where a real token sits in the corpus, as one int64 whose order is corpus order.

`key = doc_index << TOKEN_BITS | token_index`: the document's index in the corpus (counted from
0 over the documents the corpus reader yields) and the token's index among that document's real
tokens (the position its context id names). Sorting keys sorts tokens in corpus order, and a
shard — a contiguous run of documents — computes its tokens' keys without knowing how many
tokens the shards before it held, which a running token count could not.

Ties. Among exactly equal activations both harvests keep the token first in corpus order, the
smaller key: the atlas (`pipeline.atlas`) everywhere, the only order a shard can know, and the
single-latent harvest (`step`, `topn`) too, although it processes chunks in another order
(`batches.iter_batches` sorts them by length within windows of 16 batches): its top-N carries each
token's key as the tie key beside the processing ordinal. So the two keep the same contexts even
for a bitwise tie between inputs of different lengths (a decoder model seeing the same prefix in a
long and a short document is the usual case), and neither depends on the batch size.

Lives in the harvest package because the single-latent harvest numbers its tokens with it; the
atlas imports it from here (pipeline.harvest never imports pipeline.atlas).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.corpus import Document
from pipeline.harvest.batches import Chunk
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


def batch_keys(batch: list[Chunk]) -> np.ndarray:
    """Keys of a batch's real tokens, in the order of `hidden[real]` (row-major); its documents are IndexedDocuments."""
    return np.concatenate(
        [
            chunk_keys(chunk.document.index, chunk.document.doc_id, chunk.first_position, int(chunk.real.sum()))
            for chunk in batch
        ]
    )
