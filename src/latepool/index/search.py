"""Searching memory-mapped segments: an exact MaxSim scan, and a sublinear candidate stage.

Both read the segments' arrays in place and decode only what they score, so working memory is
bounded by a chunk of rows, not the corpus.

- :func:`exact_topk` streams every live document, ``chunk_rows`` vectors at a time, for a batch of
  queries at once: one matrix product per chunk, the per-document maximum of each query token,
  the sum per query.
- :func:`candidate_topk` is PLAID's idea on latepool's segments: each query token probes its
  ``nprobe`` most similar centroids; the documents filed under them in the segments' inverted
  lists are scored approximately from those lists alone (per token, the best probed centroid the
  document has a vector under); the best ``4 * candidates`` are rescored from all their codes (per
  token, the best centroid among the document's vectors' codes: PLAID's centroid interaction, still
  no vector decoded); the best ``candidates`` are decoded and scored exactly. Its work grows with
  the probed lists and the candidates, not with the index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from latepool.index.codec import Codec
from latepool.index.storage import Segment

DEFAULT_CHUNK_ROWS = 32768


@dataclass(frozen=True)
class SegmentView:
    """A segment as a search sees it: the segment, its live-document mask and its first global ordinal."""

    segment: Segment
    live: np.ndarray  # (count,) bool
    base: int  # ordinal of the segment's first document among all documents (dead ones included)


def _token_owners(queries: list[Tensor]) -> tuple[Tensor, Tensor]:
    """All query tokens ``(T, dim)`` and the ``(T, nq)`` 0/1 matrix that sums token maxima per query."""
    tokens = torch.cat([q.float() for q in queries])
    owner = torch.repeat_interleave(torch.arange(len(queries)), torch.tensor([len(q) for q in queries]))
    return tokens, torch.nn.functional.one_hot(owner, len(queries)).float()


def maxsim_rows(vectors: Tensor, lengths: Tensor, tokens: Tensor, owners: Tensor) -> Tensor:
    """MaxSim of every query against documents stored as consecutive rows.

    Args:
        vectors: ``(R, dim)`` rows of ``D`` documents, one after the other.
        lengths: ``(D,)`` rows per document (each >= 1).
        tokens: ``(T, dim)`` query tokens of all queries.
        owners: ``(T, nq)`` 0/1, which query each token belongs to.

    Returns:
        ``(D, nq)`` scores.

    Example::

        >>> docs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # document 0: rows 0-1, document 1: row 2
        >>> maxsim_rows(docs, torch.tensor([2, 1]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2, 1))
        tensor([[2.0000],
                [1.4000]])
    """
    return document_maxima(vectors @ tokens.T, lengths) @ owners


def document_maxima(similarities: Tensor, lengths: Tensor) -> Tensor:
    """``(D, T)``: for each document (consecutive rows) and token, the largest of its rows' ``(R, T)`` similarities."""
    document = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    return torch.full((len(lengths), similarities.shape[1]), -torch.inf).scatter_reduce(
        0, document[:, None].expand(-1, similarities.shape[1]), similarities, reduce="amax", include_self=True
    )


def _merge(best: tuple[Tensor, Tensor], scores: Tensor, ordinals: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Keep the ``k`` best (scores, ordinals) per query of the running best and a new ``(D, nq)`` block."""
    all_scores = torch.cat([best[0], scores.T], dim=1)
    all_ordinals = torch.cat([best[1], ordinals.expand(len(all_scores), -1)], dim=1)
    top = all_scores.topk(min(k, all_scores.shape[1]), dim=1)
    return top.values, all_ordinals.gather(1, top.indices)


def exact_topk(
    views: list[SegmentView], codec: Codec | None, queries: list[Tensor], k: int, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[Tensor, Tensor]:
    """Exact MaxSim top-k of every query over every live document.

    Returns:
        ``(scores, ordinals)``, each ``(nq, k')`` with ``k' <= k``, best first; ordinals are global
        document ordinals (see :class:`SegmentView`).
    """
    tokens, owners = _token_owners(queries)
    best = (torch.empty(len(queries), 0), torch.empty(len(queries), 0, dtype=torch.long))
    for view in views:
        offsets = view.segment.offsets
        start = 0
        while start < view.segment.count:
            stop = max(int(np.searchsorted(offsets, offsets[start] + chunk_rows, side="right")) - 1, start + 1)
            stop = min(stop, view.segment.count)
            live = torch.from_numpy(np.asarray(view.live[start:stop]))
            if live.any():
                vectors = view.segment.decode(int(offsets[start]), int(offsets[stop]), codec)
                lengths = torch.from_numpy(np.diff(offsets[start : stop + 1]))
                scores = maxsim_rows(vectors, lengths, tokens, owners)
                keep = torch.nonzero(live).flatten()  # deleted documents never enter the top-k
                best = _merge(best, scores[keep], (view.base + start + keep)[None, :], k)
            start = stop
    return best


def expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] .. starts[i] + lengths[i] - 1`` of every range, in order, as one array.

    Example::

        >>> expand_ranges(np.array([0, 5]), np.array([2, 1])).tolist()
        [0, 1, 5]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum())) + shift


def document_rows(offsets: np.ndarray, documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of ``documents`` (in order) and the row count of each.

    Example::

        >>> [a.tolist() for a in document_rows(np.array([0, 2, 5, 6]), np.array([0, 2]))]
        [[0, 1, 5], [2, 1]]
    """
    starts, lengths = offsets[documents], offsets[documents + 1] - offsets[documents]
    return expand_ranges(starts, lengths), lengths


def candidate_topk(
    views: list[SegmentView], codec: Codec, query: Tensor, k: int, nprobe: int, candidates: int
) -> tuple[Tensor, Tensor]:
    """Top-k of one query over candidates from the inverted lists, rescored exactly.

    Each query token probes its ``nprobe`` most similar centroids. A document filed under any probed
    centroid gets the approximate score ``sum_t max_{c in probed, c in codes(d)} q_t . c``, where a
    token with no probed centroid among the document's codes counts the lowest score it gave to a
    probed centroid. Only the probed inverted lists are read, so the work grows with their length,
    not with the index. The ``candidates`` best documents are then decoded and scored exactly.

    Args:
        views: The segments.
        codec: The index's codec (its centroids).
        query: ``(len, dim)`` query tokens.
        k: Hits.
        nprobe: Centroids probed per query token.
        candidates: Documents kept by the approximate score and scored exactly.

    Returns:
        ``(scores, ordinals)`` of shape ``(k',)``, best first.
    """
    query = query.float()
    centroid_scores = query @ codec.centroids.T  # (len, C)
    nearest = centroid_scores.topk(min(nprobe, centroid_scores.shape[1]), dim=1)
    probed = nearest.indices.unique()
    probed_scores = centroid_scores[:, probed]  # (len, P)
    floor = nearest.values[:, -1:]  # (len, 1): a token's lowest score among its own probes
    found: list[tuple[SegmentView, np.ndarray, Tensor]] = []
    for view in views:
        documents, approximate = _probe_segment(view, probed.numpy(), probed_scores, floor)
        if len(documents):
            found.append((view, documents, approximate))
    if not found:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    found = _refine(_keep(found, REFINE_FACTOR * candidates), centroid_scores)
    return _rescore(_keep(found, candidates), codec, query, k)


REFINE_FACTOR = 4  # documents kept from the probed-lists score for the all-codes score, per exact rescore


def _keep(
    found: list[tuple[SegmentView, np.ndarray, Tensor]], count: int
) -> list[tuple[SegmentView, np.ndarray, Tensor]]:
    """The ``count`` best documents over all segments, by their current scores, still grouped by segment."""
    scores = torch.cat([s for _, _, s in found])
    if count >= len(scores):
        return found
    positions = scores.topk(count).indices.sort().values
    kept, start = [], 0
    for view, documents, segment_scores in found:
        mine = positions[(positions >= start) & (positions < start + len(segment_scores))]
        mine = mine - start
        start += len(segment_scores)
        if len(mine):
            kept.append((view, documents[mine.numpy()], segment_scores[mine]))
    return kept


def _refine(found: list[tuple[SegmentView, np.ndarray, Tensor]], centroid_scores: Tensor):
    """Rescore documents by all their codes: ``sum_t max_{c in codes(d)} q_t . c`` (PLAID's centroid interaction)."""
    refined = []
    for view, documents, _ in found:
        rows, lengths = document_rows(view.segment.offsets, documents)
        codes = torch.from_numpy(np.asarray(view.segment.codes[rows], dtype=np.int64))
        scores = document_maxima(centroid_scores[:, codes].T, torch.from_numpy(lengths)).sum(dim=1)
        refined.append((view, documents, scores))
    return refined


def _probe_segment(
    view: SegmentView, probed: np.ndarray, probed_scores: Tensor, floor: Tensor
) -> tuple[np.ndarray, Tensor]:
    """The live documents of one segment in the probed lists, and their approximate scores."""
    segment = view.segment
    starts, stops = segment.ivf_offsets[probed], segment.ivf_offsets[probed + 1]
    sizes = (stops - starts).astype(np.int64)
    if sizes.sum() == 0:
        return np.zeros(0, dtype=np.int64), torch.empty(0)
    entries = expand_ranges(starts, sizes)
    entry_docs = np.asarray(segment.ivf_docs[entries], dtype=np.int64)
    entry_cells = torch.from_numpy(np.repeat(np.arange(len(probed)), sizes))
    alive = view.live[entry_docs]
    entry_docs, entry_cells = entry_docs[alive], entry_cells[torch.from_numpy(alive)]
    documents, local = np.unique(entry_docs, return_inverse=True)
    if len(documents) == 0:
        return documents, torch.empty(0)
    tokens = probed_scores.shape[0]
    best = floor.expand(-1, len(documents)).contiguous()  # (len, D)
    index = torch.from_numpy(local.reshape(-1)).expand(tokens, -1)
    best = best.scatter_reduce(1, index, probed_scores[:, entry_cells], reduce="amax", include_self=True)
    return documents, best.sum(dim=0)


def _rescore(
    found: list[tuple[SegmentView, np.ndarray, Tensor]], codec: Codec, query: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Exact MaxSim of the documents in ``found`` (decoded from their segments), top-k."""
    scores, ordinals = [], []
    for view, documents, _ in found:
        rows, lengths = document_rows(view.segment.offsets, documents)
        vectors = view.segment.decode_rows(rows, codec)
        scores.append(document_maxima(vectors @ query.T, torch.from_numpy(lengths)).sum(dim=1))
        ordinals.append(torch.from_numpy(documents + view.base))
    all_scores, all_ordinals = torch.cat(scores), torch.cat(ordinals)
    top = all_scores.topk(min(k, len(all_scores)))
    return top.values, all_ordinals[top.indices]
