"""The compiled inner loops of search (numba): scoring the rows of the probed inverted lists, finding
the inverted list of stored rows, and the per-document maxima of a block of similarities.

They walk memory-mapped arrays row by row, which NumPy could only do through temporaries of one
float per query token and list entry, and sorts. Compiled, each is one pass, with no temporary
beyond a few numbers per document of the segment. The loops release the GIL, so segments are
scored on parallel threads.

:func:`score_lists` is compiled once per way rows are stored: residual bytes of a given width (a
constant in the code, so the byte loop unrolls into independent sums of table lookups), or whole
float16 / int8 vectors, which it scores exactly (a dot product with the query token; float16 is
widened by the CPU's conversion instruction, which numba does not expose, through :func:`_widen`).
A row only raises its document's best score for the current token, and lists the document (without
a branch) the first time the token touches it; after each token, a pass over the documents it
touched adds their gains and resets their scores (one sequential pass over the segment instead, when
they are more than 1 / DENSE_BELOW of it: cheaper then than scattered reads), so the work follows
the rows read, not the size of the segment. A document counts as found when some token lifts it
above that token's floor, read from its gain. The probed lists lie apart in the segment's map: while
it scores one, the kernel asks for the start of a list further on (:func:`_prefetch`), so that
list's first reads do not wait on memory.
(``benchmarks/search_scale.py`` measures the whole search; the README says where the time goes.)

The first call for a way of storing in a process compiles it (about a second); the machine code is
cached next to this file when that directory is writable, and later processes load it.
"""

from __future__ import annotations

import functools
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def score_lists(
    cells: np.ndarray,
    cell_scores: np.ndarray,
    floors: np.ndarray,
    ivf_offsets: np.ndarray,
    row_docs: np.ndarray,
    stored: np.ndarray,
    tables: np.ndarray,
    live: np.ndarray,
    scales: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Token-level scores from the probed lists: per document, ``sum_t max(best_t(d) - floors[t], 0)``.

    ``best_t(d)`` is the best score of token ``t`` over the document's rows in the token's probed
    lists. A row's score depends on how rows are stored:

    - residual bytes (uint8, ``(rows, B)``, ``B`` may be 0): its centroid's score plus its residual's,
      ``tables[t, j, stored[row, j]]`` summed over the row's bytes ``j``;
    - float16 or int8 vectors (``(rows, dim)``, int8 times ``scales[row]``): exactly the dot product
      of the token, ``tables[t]``, with the row (its centroid's score is not used).

    The work is proportional to the rows read: per-document scores live in this thread's scratch
    arrays (:func:`_scratch`), and only the documents a token's rows touched are visited after it
    (or the whole segment in one sequential pass, when they are more than 1 / :data:`DENSE_BELOW` of it).

    Args:
        cells: ``(T, nprobe)`` int64 centroids probed by each query token; a token that probes fewer
            ends its row with -1.
        cell_scores: ``(T, nprobe)`` float32 score of each probed centroid for its token.
        floors: ``(T,)`` float32 score a token gives a document it does not find.
        ivf_offsets: ``(C + 1,)`` int64: centroid ``c``'s rows are the stored rows
            ``ivf_offsets[c] .. ivf_offsets[c + 1] - 1``.
        row_docs: ``(rows,)`` uint16 document of each stored row.
        stored: What each stored row holds: uint8 residual bytes, or float16 / int8 vectors.
        tables: Per token, for residual bytes ``(T, B, 256)`` float32, the score of every byte value at
            every byte position; for vectors ``(T, dim)`` float32, the token itself.
        live: ``(count,)`` bool, False for deleted documents.
        scales: ``(rows,)`` float32 scale of each int8 row (int8 only).

    Returns:
        ``(found, gains)``: int32 positions of the live documents found (some token scored them above
        its floor), in no set order, and their float32 gains. A document no token
        lifts above its floor scores the sum of the floors, found or not.

    Example::

        >>> found, gains = score_lists(np.array([[1, 0]]), np.array([[0.5, 0.25]], np.float32),
        ...     np.array([0.1], np.float32), np.array([0, 1, 3]), np.array([1, 0, 0], np.uint16),
        ...     np.zeros((3, 0), np.uint8), np.zeros((1, 0, 256), np.float32), np.ones(2, bool))
        >>> found.tolist(), gains.tolist()
        ([0, 1], [0.4000000059604645, 0.15000000596046448])
        >>> vectors = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], np.float16)  # the same lists, scored exactly
        >>> found, gains = score_lists(np.array([[1, 0]]), np.array([[0.5, 0.25]], np.float32),
        ...     np.array([0.1], np.float32), np.array([0, 1, 3]), np.array([1, 0, 0], np.uint16),
        ...     vectors, np.array([[0.8, 0.2]], np.float32), np.ones(2, bool))
        >>> found.tolist(), [round(g, 6) for g in gains.tolist()]
        ([0, 1], [0.4, 0.7])
    """
    if stored.dtype == np.uint8:
        kernel = _compiled("residual", stored.shape[1])
        tables = tables.reshape(len(tables), -1)
    elif stored.dtype == np.float16:
        kernel, stored = _compiled("float16"), stored.view(np.uint16)
    elif stored.dtype == np.int8:
        kernel = _compiled("int8")
    else:
        raise TypeError(f"rows stored as {stored.dtype} cannot be scored")
    scales = _NO_SCALES if scales is None else scales
    scratch = _scratch(len(live))
    return kernel(cells, cell_scores, floors, ivf_offsets, row_docs, stored, scales, tables, live, *scratch)


DENSE_BELOW = 64  # a token that touched more than 1 / DENSE_BELOW of a segment's documents takes a dense pass
PREFETCH_AHEAD = 2  # the probe asks for the rows of the list this many lists ahead (and the offsets of twice as far)
PREFETCH_LINES = 4  # cache lines of that list's stored rows asked for (the hardware prefetcher follows the rest)
_UNSEEN = np.float32(-3.0e38)  # a document's best score before the current token reaches it
_NO_SCALES = np.zeros(0, np.float32)
_thread_scratch = threading.local()


def _scratch(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This thread's working arrays for a segment of ``count`` documents: per document its best score for
    the current token (all unseen between calls) and its gain (all 0 between calls), the documents the
    current token touched, and the documents found so far. Made once per thread and size, never cleared
    whole: the kernel resets exactly the entries it touched."""
    arrays = getattr(_thread_scratch, "arrays", None)
    if arrays is None or len(arrays[0]) < count:
        size = max(count, 1)
        arrays = (
            np.full(size, _UNSEEN, np.float32),
            np.zeros(size, np.float32),
            np.empty(size + 1, np.int32),
            np.empty(size + 1, np.int32),
        )
        _thread_scratch.arrays = arrays
    return arrays


@intrinsic
def _widen(typingctx, bits):
    """The float32 value of a float16's bits (uint16), by LLVM's conversion (one instruction with F16C)."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def _prefetch(typingctx, array, index, offset):
    """Ask the CPU to bring the byte ``offset`` bytes past the start of ``array[index]`` into cache,
    without waiting for it (LLVM's prefetch, which never faults: an address past the array is harmless)."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, value=args[0])
        stride = cgutils.unpack_tuple(builder, data.strides, signature.args[0].ndim)[0]
        start = builder.bitcast(data.data, ir.IntType(8).as_pointer())
        address = builder.gep(start, [builder.add(builder.mul(args[1], stride), args[2])])
        int32 = ir.IntType(32)
        prototype = ir.FunctionType(ir.VoidType(), [address.type, int32, int32, int32])
        function = cgutils.get_or_insert_function(builder.module, prototype, "llvm.prefetch.p0i8")
        builder.call(function, [address, int32(0), int32(3), int32(1)])  # a read, kept in every cache level, data
        return context.get_dummy_value()

    return types.void(array, types.int64, types.int64), codegen


# the dot products may sum in any order, so that LLVM vectorizes them
_DOT_MATH = {"nsz", "arcp", "contract", "reassoc"}


@numba.njit(cache=True, nogil=True, fastmath=_DOT_MATH)
def _float16_row_score(stored, table, row):
    """A float16 row's exact score (its bits in ``stored``): its dot product with the token ``table``."""
    values = stored[row]
    total = np.float32(0.0)
    for j in range(len(table)):
        total += _widen(values[j]) * table[j]
    return total


@numba.njit(cache=True, nogil=True, fastmath=_DOT_MATH)
def _int8_row_score(stored, scales, table, row):
    """An int8 row's exact score: its dot product with the token ``table``, times the row's scale."""
    values = stored[row]
    total = np.float32(0.0)
    for j in range(len(table)):
        total += np.float32(values[j]) * table[j]
    return total * scales[row]


@numba.njit(cache=True, nogil=True, fastmath={"nsz", "arcp", "contract"})
def _residual_row_score(stored, table, row, width):
    """A residual row's score less its centroid's: the lookups of its ``width`` bytes in ``table`` (flat).
    Inlined where ``width`` is a constant, so the loop unrolls."""
    packed = stored[row]
    quads = width // 4
    s0 = s1 = s2 = s3 = np.float32(0.0)  # four independent sums of lookups
    for quad in range(quads):
        at = 1024 * quad  # the table of byte 4 * quad
        s0 += table[at + packed[4 * quad]]
        s1 += table[at + 256 + packed[4 * quad + 1]]
        s2 += table[at + 512 + packed[4 * quad + 2]]
        s3 += table[at + 768 + packed[4 * quad + 3]]
    for byte in range(4 * quads, width):
        s0 += table[256 * byte + packed[byte]]
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_list(cells, j, ivf_offsets, row_docs, stored):
    """Ask for the start of the list :data:`PREFETCH_AHEAD` after list ``j`` of a token's ``cells`` (its first
    rows' bytes and documents) and for the offsets of the list twice as far: lists lie apart in the map,
    so without it each list's first reads wait on memory."""
    ahead, far = j + PREFETCH_AHEAD, j + 2 * PREFETCH_AHEAD
    if ahead < len(cells) and cells[ahead] >= 0:
        first = ivf_offsets[cells[ahead]]
        for line in range(PREFETCH_LINES):
            _prefetch(stored, first, 64 * line)
        _prefetch(row_docs, first, 0)
    if far < len(cells) and cells[far] >= 0:
        _prefetch(ivf_offsets, cells[far], 0)


_STORING = {"residual": 0, "float16": 1, "int8": 2}


@functools.cache
def _compiled(storing: str, width: int = 0):
    """The compiled :func:`score_lists` for rows stored as ``storing`` ("residual" bytes of ``width``,
    "float16" or "int8" vectors); ``tables`` flat: ``(T, width * 256)`` or ``(T, dim)``. ``kind`` and
    ``width`` are constants of the compiled code: numba drops the branches of the other kinds."""
    kind = _STORING[storing]

    @numba.njit(cache=True, nogil=True, fastmath={"nsz", "arcp", "contract"})
    def score_lists_of(
        cells, cell_scores, floors, ivf_offsets, row_docs, stored, scales, tables, live, best, gains, touched, found
    ):
        unseen = np.float32(-3.0e38)
        count, found_count, dense = len(live), 0, False
        for token in range(cells.shape[0]):
            table, probed = tables[token], cells[token]
            seen = 0  # documents this token's rows touched so far, listed in touched[:seen]
            for j in range(len(probed)):
                cell, cell_score = probed[j], cell_scores[token, j]
                if cell < 0:  # the token probes fewer lists than the widest
                    break
                _prefetch_list(probed, j, ivf_offsets, row_docs, stored)
                for row in range(ivf_offsets[cell], ivf_offsets[cell + 1]):
                    if kind == 1:
                        score = _float16_row_score(stored, table, row)
                    elif kind == 2:
                        score = _int8_row_score(stored, scales, table, row)
                    else:
                        score = cell_score + _residual_row_score(stored, table, row, width)
                    document = row_docs[row]
                    previous = best[document]
                    touched[seen] = document  # kept (seen advances) only on the document's first row
                    seen += previous == unseen
                    best[document] = max(previous, score)
            floor = floors[token]
            if seen * DENSE_BELOW > count:  # touched documents are many: one sequential pass is cheaper
                dense = True
                for document in range(count):
                    gains[document] += max(best[document] - floor, np.float32(0.0))
                    best[document] = unseen
                continue
            for i in range(seen):  # the token's gains, over the documents it touched only (no branch)
                document = touched[i]
                gain = max(best[document] - floor, np.float32(0.0))
                best[document] = unseen
                found[found_count] = document  # kept only if this is the document's first gain
                found_count += (gain > 0.0) & (gains[document] == 0.0)
                gains[document] += gain
        if dense:  # a dense pass kept no list of first gains: every document is looked at
            found_count = 0
            for document in range(count):
                found[found_count] = document
                found_count += gains[document] > 0.0
        documents = np.empty(found_count, np.int32)
        document_gains = np.empty(found_count, np.float32)
        size = 0
        for i in range(found_count):  # deleted documents are scored like the others, and dropped here
            document = found[i]
            if live[document]:
                documents[size] = document
                document_gains[size] = gains[document]
                size += 1
            gains[document] = 0.0
        return documents[:size], document_gains[:size]

    return score_lists_of


ROW_BLOCK = 64  # rows per entry of a segment's row-block table (see row_block_cells)


def row_block_cells(ivf_offsets: np.ndarray, rows: int) -> np.ndarray:
    """``(ceil(rows / ROW_BLOCK),)`` int32: the inverted list holding the first row of each block of rows.

    With it, :func:`row_cells` finds a stored row's list in one or two steps instead of a binary search
    of ``ivf_offsets`` (a list holds about a block of a segment's rows at the default centroid count):
    9 against 96 ns a row for ``searchsorted``, random rows of a segment of the 1M-document scale index.

    Example::

        >>> row_block_cells(np.array([0, 70, 70, 130]), 130).tolist()
        [0, 0, 2]
    """
    return (np.searchsorted(ivf_offsets, np.arange(0, rows, ROW_BLOCK), side="right") - 1).astype(np.int32)


@numba.njit(cache=True, nogil=True, inline="always")
def _cell_of(row, ivf_offsets, block_cells):
    cell = block_cells[row // ROW_BLOCK]
    while ivf_offsets[cell + 1] <= row:
        cell += 1
    return cell


@numba.njit(cache=True, nogil=True)
def row_cells(stored: np.ndarray, ivf_offsets: np.ndarray, block_cells: np.ndarray) -> np.ndarray:
    """``(len(stored),)`` int64: the inverted list (centroid) of each stored row.

    Args:
        stored: Stored row positions, in any order.
        ivf_offsets: ``(C + 1,)`` the lists' row offsets.
        block_cells: :func:`row_block_cells` of ``ivf_offsets``.

    Example::

        >>> offsets = np.array([0, 70, 70, 130])
        >>> row_cells(np.array([129, 0, 69, 70]), offsets, row_block_cells(offsets, 130)).tolist()
        [2, 0, 0, 2]
    """
    cells = np.empty(len(stored), np.int64)
    for i in range(len(stored)):
        cells[i] = _cell_of(stored[i], ivf_offsets, block_cells)
    return cells


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
