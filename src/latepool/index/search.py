"""Searching memory-mapped segments: an exact MaxSim scan, and a sublinear candidate stage.

Both read the segments' arrays in place and decode only what they score, so working memory is
bounded by a chunk of rows, not the corpus.

- :func:`exact_topk` streams every live document, ``chunk_rows`` vectors at a time, for a batch of
  queries at once: one matrix product per chunk, the per-document maximum of each query token,
  the sum per query.
- :func:`candidate_topk` is PLAID's idea on latepool's segments: each query token probes its
  ``nprobe`` most similar centroids; the documents filed under them in the segments' inverted
  lists are scored approximately, by MaxSim against the *centroids* of their vectors (their codes,
  no decoding); the best ``candidates`` are decoded and scored exactly. Its work grows with the
  probed share of the inverted lists and the candidates, not with the index.
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


def document_rows(offsets: np.ndarray, documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of ``documents`` (in order) and the row count of each.

    Example::

        >>> [a.tolist() for a in document_rows(np.array([0, 2, 5, 6]), np.array([0, 2]))]
        [[0, 1, 5], [2, 1]]
    """
    starts, lengths = offsets[documents], offsets[documents + 1] - offsets[documents]
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum())) + shift, lengths


def candidate_topk(
    views: list[SegmentView], codec: Codec, query: Tensor, k: int, nprobe: int, candidates: int
) -> tuple[Tensor, Tensor]:
    """Top-k of one query over candidates from the inverted lists, rescored exactly.

    Args:
        views: The segments.
        codec: The index's codec (its centroids).
        query: ``(len, dim)`` query tokens.
        k: Hits.
        nprobe: Centroids probed per query token.
        candidates: Documents kept by the approximate (centroid) score and scored exactly.

    Returns:
        ``(scores, ordinals)`` of shape ``(k',)``, best first.
    """
    query = query.float()
    centroid_scores = query @ codec.centroids.T  # (len, C)
    probed = centroid_scores.topk(min(nprobe, centroid_scores.shape[1]), dim=1).indices.unique().numpy()
    found: list[tuple[SegmentView, np.ndarray, Tensor]] = []
    for view in views:
        segment = view.segment
        lists = [segment.ivf_docs[segment.ivf_offsets[c] : segment.ivf_offsets[c + 1]] for c in probed]
        documents = np.unique(np.concatenate(lists)) if lists else np.zeros(0, dtype=np.int32)
        documents = documents[view.live[documents]].astype(np.int64)
        if len(documents) == 0:
            continue
        rows, lengths = document_rows(segment.offsets, documents)
        codes = torch.from_numpy(segment.codes[rows].astype(np.int64))
        approximate = document_maxima(centroid_scores[:, codes].T, torch.from_numpy(lengths)).sum(dim=1)
        found.append((view, documents, approximate))
    if not found:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    approximate = torch.cat([scores for _, _, scores in found])
    keep = approximate.topk(min(candidates, len(approximate))).indices.sort().values
    return _rescore(found, keep, codec, query, k)


def _rescore(
    found: list[tuple[SegmentView, np.ndarray, Tensor]], keep: Tensor, codec: Codec, query: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Exact MaxSim of the kept candidates (positions into the concatenated ``found``), top-k."""
    scores, ordinals, start = [], [], 0
    for view, documents, approximate in found:
        mine = keep[(keep >= start) & (keep < start + len(approximate))] - start
        start += len(approximate)
        if len(mine) == 0:
            continue
        chosen = documents[mine.numpy()]
        rows, lengths = document_rows(view.segment.offsets, chosen)
        vectors = view.segment.decode_rows(rows, codec)
        scores.append(document_maxima(vectors @ query.T, torch.from_numpy(lengths)).sum(dim=1))
        ordinals.append(torch.from_numpy(chosen + view.base))
    all_scores, all_ordinals = torch.cat(scores), torch.cat(ordinals)
    top = all_scores.topk(min(k, len(all_scores)))
    return top.values, all_ordinals[top.indices]
