"""The compiled inner loops of search (numba): scoring the rows of the probed inverted lists, and the
per-document maxima of a block of similarities.

It walks memory-mapped arrays row by row, which NumPy could only do through temporaries of one
float per query token and list entry, and sorts. Compiled, it is one pass over the entries, with no
temporary beyond a few numbers per document of the segment. The loop releases the GIL, so segments
are scored on parallel threads.

The residual width (bytes per row) is compiled in as a constant, so the byte loop unrolls into
four independent sums of table lookups: 1.13 times faster than a loop over a width read from the
array (24.4 against 27.6 ns per row and token, single-threaded, nprobe 32, on the 1M-document index
of ``benchmarks/search_scale.py``, in one process).
The first call for a width in a process compiles it (about a second); the machine code is cached
next to this file when that directory is writable, and later processes load it.
"""

from __future__ import annotations

import functools

import numba
import numpy as np


def score_lists(
    cells: np.ndarray,
    cell_scores: np.ndarray,
    floors: np.ndarray,
    ivf_offsets: np.ndarray,
    row_docs: np.ndarray,
    residuals: np.ndarray,
    lut: np.ndarray,
    live: np.ndarray,
    gains: np.ndarray,
) -> np.ndarray:
    """Token-level scores from the probed lists: per document, ``sum_t max(best_t(d) - floors[t], 0)``.

    ``best_t(d)`` is the best score of token ``t`` over the document's rows in the token's probed
    lists; a row's score is its centroid's score plus its residual's, ``lut[t, j, residuals[row, j]]``
    summed over the row's residual bytes ``j`` (no residual bytes: the centroid's score alone).

    Args:
        cells: ``(T, nprobe)`` int64 centroids probed by each query token.
        cell_scores: ``(T, nprobe)`` float32 score of each probed centroid for its token.
        floors: ``(T,)`` float32 score a token gives a document it does not find.
        ivf_offsets: ``(C + 1,)`` int64: centroid ``c``'s rows are the stored rows
            ``ivf_offsets[c] .. ivf_offsets[c + 1] - 1``.
        row_docs: ``(rows,)`` uint16 document of each stored row.
        residuals: ``(rows, B)`` uint8 packed residual bytes of each stored row (``B`` may be 0).
        lut: ``(T, B, 256)`` float32 score of every byte value at every byte position, per token.
        live: ``(count,)`` bool, False for deleted documents.
        gains: ``(count,)`` float32 zeros, accumulated in place.

    Returns:
        int32 positions of the documents found, in the order they were first found.

    Example::

        >>> gains = np.zeros(2, np.float32)
        >>> found = score_lists(np.array([[1, 0]]), np.array([[0.5, 0.25]], np.float32), np.array([0.1], np.float32),
        ...                     np.array([0, 1, 3]), np.array([1, 0, 0], np.uint16), np.zeros((3, 0), np.uint8),
        ...                     np.zeros((1, 0, 256), np.float32), np.ones(2, bool), gains)
        >>> found.tolist(), gains.tolist()
        ([0, 1], [0.4000000059604645, 0.15000000596046448])
    """
    kernel = _compiled(residuals.shape[1])
    return kernel(cells, cell_scores, floors, ivf_offsets, row_docs, residuals, lut.reshape(len(lut), -1), live, gains)


@functools.cache
def _compiled(width: int):
    """The compiled :func:`score_lists` for rows of ``width`` residual bytes (``lut`` flat: ``(T, width * 256)``)."""
    quads = width // 4

    @numba.njit(cache=True, nogil=True)
    def score_lists_of_width(cells, cell_scores, floors, ivf_offsets, row_docs, residuals, lut, live, gains):
        count = len(live)
        best = np.empty(count, np.float32)
        stamp = np.full(count, -1, np.int32)
        touched = np.empty(count, np.int32)
        token_documents = np.empty(count, np.int32)
        found = 0
        for token in range(cells.shape[0]):
            table = lut[token]
            seen = 0
            for j in range(cells.shape[1]):
                cell = cells[token, j]
                for row in range(ivf_offsets[cell], ivf_offsets[cell + 1]):
                    document = row_docs[row]
                    if not live[document]:
                        continue
                    packed = residuals[row]
                    s0 = s1 = s2 = s3 = np.float32(0.0)  # four independent sums of lookups
                    for quad in range(quads):
                        at = 1024 * quad  # the table of byte 4 * quad
                        s0 += table[at + packed[4 * quad]]
                        s1 += table[at + 256 + packed[4 * quad + 1]]
                        s2 += table[at + 512 + packed[4 * quad + 2]]
                        s3 += table[at + 768 + packed[4 * quad + 3]]
                    for byte in range(4 * quads, width):
                        s0 += table[256 * byte + packed[byte]]
                    score = cell_scores[token, j] + ((s0 + s1) + (s2 + s3))
                    if stamp[document] != token:
                        if stamp[document] == -1:
                            touched[found] = document
                            found += 1
                        stamp[document] = token
                        best[document] = score
                        token_documents[seen] = document
                        seen += 1
                    elif score > best[document]:
                        best[document] = score
            for i in range(seen):
                gain = best[token_documents[i]] - floors[token]
                if gain > 0:
                    gains[token_documents[i]] += gain
        return touched[:found].copy()

    return score_lists_of_width


@numba.njit(cache=True, nogil=True)
def row_group_maxima(similarities: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(D, T)``: for each group of consecutive rows (a document's), the column-wise maximum of its rows.

    One pass over ``similarities``; NumPy's ``maximum.reduceat`` over axis 0 takes about 30 times
    longer on a ``(32768, 4800)`` block (the exact scan's), and it is most of the exact scan's time.

    Args:
        similarities: ``(R, T)`` float32, C-contiguous.
        lengths: ``(D,)`` int64 rows per group, each >= 1, summing to ``R``.

    Example::

        >>> row_group_maxima(np.array([[1, 0], [0.5, 2], [3, 1]], np.float32), np.array([2, 1])).tolist()
        [[1.0, 2.0], [3.0, 1.0]]
    """
    maxima = np.empty((len(lengths), similarities.shape[1]), similarities.dtype)
    row = 0
    for group in range(len(lengths)):
        best = maxima[group]
        best[:] = similarities[row]
        for other in range(row + 1, row + lengths[group]):
            values = similarities[other]
            for column in range(len(best)):
                if values[column] > best[column]:
                    best[column] = values[column]
        row += lengths[group]
    return maxima
