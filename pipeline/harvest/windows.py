"""The display window around each kept token, and the contexts built from it.

A window is the focus token with up to `window` tokens each side, inside its chunk, shown as
the document's own text (`display_pieces`). Windows are built lazily, once per token a latent
keeps, and shared by every latent that keeps the same token; their digest is the key that
deduplication (`topn`) compares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from pipeline.harvest.batches import Chunk
from pipeline.harvest.topn import TokenContext, TopN
from vista_tui.mapdata import context_id_for


class Windows:
    """The display window around each real token of a batch, built once and shared by the latents.

    Tokens are indexed as in `hidden[real]` (row-major over the batch's real tokens).
    """

    def __init__(self, batch: list[Chunk], real: np.ndarray, window: int) -> None:
        """Index the batch's real tokens; spans and keys are computed on demand and remembered."""
        self.batch = batch
        self.window = window
        self.rows, self.columns = np.nonzero(real)  # row-major: the order of hidden[real]
        self.counts = np.bincount(self.rows, minlength=len(batch))
        self.row_start = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self._spans: dict[int, tuple[list[str], int, int]] = {}
        self._keys: dict[int, bytes] = {}

    def span(self, t: int) -> tuple[list[str], int, int]:
        """Token t's window: its display pieces and its bounds [lo, hi) in batch token index."""
        found = self._spans.get(t)
        if found is None:
            row = int(self.rows[t])
            first, n_real = int(self.row_start[row]), int(self.counts[row])
            lo, hi = max(first, t - self.window), min(first + n_real, t + self.window + 1)
            chunk = self.batch[row]
            found = display_pieces(chunk.document.text, chunk.offsets[self.columns[lo:hi]]), lo, hi
            self._spans[t] = found
        return found

    def key(self, t: int) -> bytes:
        """What token t's context shows, as a digest: equal for equal pieces and focus position."""
        found = self._keys.get(t)
        if found is None:
            pieces, lo, _ = self.span(t)
            shown = f"{t - lo}:{','.join(str(len(piece)) for piece in pieces)}:{''.join(pieces)}"
            found = hashlib.blake2b(shown.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            self._keys[t] = found
        return found

    def keys_from(self, start: int) -> Callable[[int], bytes]:
        """`key` of the tokens of an encoding block that starts at batch token `start`."""
        return lambda i: self.key(start + i)

    def context(
        self,
        t: int,
        codes: dict[int, tuple[np.ndarray, np.ndarray]],
        child_codes: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> tuple[TokenContext, int, int]:
        """Token t's kept context, and its window's bounds (`child_codes`: SAE B's firings, with `--also-sae`)."""
        pieces, lo, hi = self.span(t)
        row = int(self.rows[t])
        chunk = self.batch[row]
        code_indices, code_values = codes[t]
        position = chunk.first_position + (t - int(self.row_start[row]))
        context = TokenContext(
            context_id=context_id_for(chunk.document.source, chunk.document.doc_id, position),
            doc_id=chunk.document.doc_id,
            text="".join(pieces),
            tokens=pieces,
            focus=t - lo,
            code_indices=code_indices,
            code_values=code_values,
            input_position=int(self.columns[t]),
            children=child_codes[t] if child_codes is not None else None,
        )
        return context, lo, hi


def materialise(
    windows: Windows,
    latent_acts: np.ndarray,
    codes: dict[int, tuple[np.ndarray, np.ndarray]],
    tops: dict[int, TopN],
    latents: tuple[int, ...],
    base: int,
    child_codes: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
) -> None:
    """Build the contexts of the tokens this batch added to some latent's best N (`child_codes`: SAE B's
    firings on them, with `--also-sae`)."""
    token_contexts: dict[int, tuple[TokenContext, int, int]] = {}
    for j, latent in enumerate(latents):
        top = tops[latent]
        for ordinal in top.pending(base).tolist():
            t = ordinal - base
            if t not in token_contexts:
                token_contexts[t] = windows.context(t, codes, child_codes)
            context, lo, hi = token_contexts[t]
            top.entries[ordinal] = (context, latent_acts[lo:hi, j].copy())


def display_pieces(text: str, spans: np.ndarray) -> list[str]:
    """Display strings of consecutive tokens that concatenate back into the original text.

    Each token shows the text from the end of the token before it to its own end, so the
    whitespace between words rides on the word after it (" world"); the first token of the
    window shows only its own span. Cased and accented as in the document, whatever the
    tokenizer normalised; a token that shares its characters with the one before (byte
    pieces of one character) shows "".
    """
    pieces: list[str] = []
    previous_end: int | None = None
    for start, end in spans.tolist():
        begin = start if previous_end is None else previous_end
        pieces.append(text[begin:end] if end > begin else "")
        previous_end = end if previous_end is None else max(previous_end, end)
    return pieces
