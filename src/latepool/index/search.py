"""Searching memory-mapped segments: an exact MaxSim scan, and a sublinear candidate stage.

Both read the segments' arrays in place and decode only what they score, so working memory is
bounded by a chunk of rows, not the corpus.

- :func:`exact_topk` streams every live document, ``chunk_rows`` vectors at a time, for a batch of
  queries at once: one matrix product per chunk, the per-document maximum of each query token,
  the sum per query.
- :func:`candidate_topk` follows WARP (Scheerer et al., 2025) on latepool's segments: each query
  token reads the inverted lists of its ``nprobe`` most similar centroids (contiguous runs of rows,
  since segments store vectors grouped by centroid) and scores every row there: a residual row from
  its centroid score plus its residual bytes through a per-query lookup table, without decoding it;
  a float16 or int8 row exactly, from its stored values (it has no residual to look up); a document
  sums, per token, its best row, or the token's best unprobed centroid score where the token did
  not find it. The best ``rescore`` documents are decoded and scored exactly. Its work grows
  with the probed lists and the candidates, not with the index. (PLAID's centroid interaction,
  which scores documents from their codes alone, was measured first: it ranked the exact top 10
  too low on the scale benchmark's near-duplicate documents, recall@10 0.57 at 100k.)
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from latepool.index.codec import Codec
from latepool.index.kernels import row_group_maxima, score_lists
from latepool.index.storage import Segment, decode_values, document_rows

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
    """``(D, T)``: for each document (consecutive rows) and token, the largest of its rows' ``(R, T)`` similarities.

    Example::

        >>> document_maxima(torch.tensor([[1.0, 0.0], [0.5, 2.0], [3.0, 1.0]]), torch.tensor([2, 1]))
        tensor([[1., 2.],
                [3., 1.]])
    """
    return torch.from_numpy(row_group_maxima(similarities.contiguous().numpy(), lengths.numpy().astype(np.int64)))


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


def candidate_topk(
    views: list[SegmentView],
    codec: Codec,
    queries: list[Tensor],
    k: int,
    nprobe: int,
    rescore: int,
    rescore_limit: int | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """Top-k of each query: token-level scores from the probed inverted lists, then exact MaxSim of the best.

    1. *Probe* (WARP's design, on latepool's segments): each query token reads the inverted lists of
       its most similar centroids (``nprobe`` on average, more for a token that stands for several,
       see :func:`probe_counts`) and scores every row there from the row's code and
       residual bytes, through a per-query lookup table (no vector is decoded). A document's score
       is the sum over tokens of its best row's score, or, for a token that did not find it, the
       token's best unprobed centroid score. Only the probed lists are read: the work grows with
       their length, not with the index.
    2. *Exact*: the ``rescore`` best documents are decoded and scored with MaxSim. With a
       ``rescore_limit``, the stopping rule then keeps rescoring the next best in rounds, while one of
       them could still enter the top k (:func:`still_open`) and the last round changed the top k, up
       to ``rescore_limit`` in all.

    One query is probed and rescored on one thread per segment; a batch runs its queries on parallel
    threads.

    Args:
        views: The segments.
        codec: The index's codec (its centroids and residual buckets).
        queries: ``(len_i, dim)`` query tokens of each query.
        k: Hits.
        nprobe: Centroids probed per distinct query token, on average.
        rescore: Documents scored exactly first (``Index.search``'s ``rescore``).
        rescore_limit: Documents scored exactly at most under the stopping rule; None (or ``<= rescore``)
            scores exactly ``rescore``.

    Returns:
        Per query, ``(scores, ordinals)`` of shape ``(k',)``, best first.
    """
    limit = max(rescore, rescore_limit or 0)
    if len(queries) == 1:
        return [_candidate_topk(views, codec, queries[0].float(), k, nprobe, rescore, limit, _threads().map)]
    return list(
        _threads().map(lambda q: _candidate_topk(views, codec, q.float(), k, nprobe, rescore, limit, map), queries)
    )


def _candidate_topk(
    views: list[SegmentView], codec: Codec, query: Tensor, k: int, nprobe: int, rescore: int, limit: int, mapper
) -> tuple[Tensor, Tensor]:
    """:func:`candidate_topk` of one query, its segments probed through ``mapper`` (threads or not)."""
    probe, base = _probe(codec, query, nprobe)
    probed = mapper(lambda view: (view, *_probe_segment(view, probe, base, limit)), views)
    found = [(view, documents, scores) for view, documents, scores in probed if len(documents)]
    if not found:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    scores, ordinals = _rescore_until_settled(found, codec, query, k, rescore, limit, mapper)
    top = scores.topk(min(k, len(scores)))
    return top.values, ordinals[top.indices]


def _rescore_until_settled(
    found: list[tuple[SegmentView, np.ndarray, Tensor]],
    codec: Codec,
    query: Tensor,
    k: int,
    first: int,
    limit: int,
    mapper,
) -> tuple[Tensor, Tensor]:
    """Exact scores of the best ``first`` candidates by stage-1 score, then of the next best in rounds, each
    at most as many as scored so far, while :func:`still_open` says one could enter the top k and the last
    round changed the top k (a round whose candidates all fell short says the next, ranked lower, would too)."""
    # with limit == first, the first round scores them all and none remain
    segment_of, documents, stage1 = _best_candidates(found, limit)
    exact, ordinals, done, top = [], [], 0, None
    size = min(first, len(stage1))
    while size:
        segments, group = segment_of[done : done + size], documents[done : done + size]
        chosen = [(found[s][0], group[segments == s]) for s in np.unique(segments).tolist()]
        scores, group_ordinals = _exact_scores(chosen, codec, query, mapper)
        exact.append(scores)
        ordinals.append(group_ordinals)
        done += size
        scores, scored = torch.cat(exact), torch.cat(ordinals)
        previous, top = top, set(scored[scores.topk(min(k, done)).indices].tolist())
        if top == previous:
            break
        size = min(still_open(stage1[:done], scores, stage1[done:], k), done)
    return torch.cat(exact), torch.cat(ordinals)


def still_open(scored_stage1: Tensor, scored_exact: Tensor, remaining_stage1: Tensor, k: int) -> int:
    """The stopping rule: how many of the remaining candidates could still enter the top k.

    Stage-1 scores misjudge a document's exact score (a token's floor stands in for rows the probe
    did not read, and merged query tokens probe for several); the candidates scored so far show by
    how much. The rule takes the largest shortfall among the current top k, ``exact - stage1``, as
    the most a remaining candidate could gain, and counts the remaining candidates whose stage-1
    score plus that margin reaches the k-th best exact score. Fewer than ``k`` scored: all remain open.

    Args:
        scored_stage1: ``(n,)`` stage-1 scores of the candidates scored exactly so far.
        scored_exact: ``(n,)`` their exact scores.
        remaining_stage1: The other candidates' stage-1 scores, best first.
        k: Hits.

    Returns:
        How many of the remaining candidates (a prefix, since they are sorted) are still open.

    Example::

        >>> still_open(torch.tensor([3.0, 2.0]), torch.tensor([3.5, 2.0]), torch.tensor([1.6, 1.4, 1.0]), k=1)
        0
        >>> still_open(torch.tensor([3.0, 2.0]), torch.tensor([3.2, 2.0]), torch.tensor([3.1, 1.4, 1.0]), k=1)
        1
    """
    if len(scored_exact) < k:
        return len(remaining_stage1)
    top = scored_exact.topk(k).indices
    threshold = scored_exact[top[-1]]
    margin = (scored_exact[top] - scored_stage1[top]).max()
    return int((remaining_stage1 + margin >= threshold).sum())


@dataclass(frozen=True)
class _Probe:
    """What every segment's probe needs of one query (see :func:`~latepool.index.kernels.score_lists`)."""

    cells: np.ndarray
    cell_scores: np.ndarray
    floors: np.ndarray
    tables: np.ndarray  # residual lookup tables, or the tokens themselves where rows are scored exactly


def _probe(codec: Codec, query: Tensor, nprobe: int) -> tuple[_Probe, float]:
    """The probe of one query: its representative tokens (see :func:`merge_tokens`), their probed centroids
    (:func:`probe_counts` of them each) and scores, floors and tables (the residual lookup table with
    residual bits, else the tokens, whose rows are scored exactly), each scaled by how many tokens the
    representative stands for; and the score of a document no token finds (the sum of the floors)."""
    representatives, weights = merge_tokens(query)
    tokens = query[representatives]
    centroid_scores = tokens @ codec.centroids.T  # (representatives, C)
    total = centroid_scores.shape[1]
    counts = probe_counts(weights, nprobe, total)
    width = int(counts.max())
    nearest = centroid_scores.topk(min(width + 1, total), dim=1)
    probed = torch.arange(width)[None, :] < counts[:, None]
    # a token's floor is its best unprobed score; past the last centroid, one under any row score
    # (query tokens and vectors have norms <= 1)
    padded = torch.cat([nearest.values, nearest.values[:, -1:] - 2.0], dim=1)
    floors = padded.gather(1, counts[:, None])[:, 0]
    # w * max(score - floor, 0) = max(w * score - w * floor, 0): a representative scores for its w tokens
    probe = _Probe(
        torch.where(probed, nearest.indices[:, :width], -1).numpy(),
        (nearest.values[:, :width] * weights[:, None]).numpy(),
        (floors * weights).numpy(),
        _tables(codec, tokens, weights),
    )
    return probe, float((floors * weights).sum())


def _tables(codec: Codec, tokens: Tensor, weights: Tensor) -> np.ndarray:
    """What :func:`~latepool.index.kernels.score_lists` scores the probed rows with, times each token's
    weight: the residual lookup tables ``(T, B, 256)`` with residual bits, else the tokens ``(T, dim)``."""
    if codec.bits:
        return residual_table(codec, tokens) * weights.numpy()[:, None, None]
    return np.ascontiguousarray((tokens.float() * weights[:, None]).numpy())


PROBE_WEIGHT_POWER = 0.75


def probe_counts(weights: Tensor, nprobe: int, centroids: int, power: float = PROBE_WEIGHT_POWER) -> Tensor:
    """How many lists each representative token probes: ``nprobe`` on average, shared by ``weight ** power``.

    A representative's scores count ``weight`` times (it stands for that many query tokens), so a
    row it misses costs that many times more: it probes more lists, the others fewer, for the same
    rows read (the README's scale section compares powers and settings). Each count is at least 1 and
    at most ``centroids``; from ``nprobe >= centroids`` on, every token probes every list.

    Example::

        >>> probe_counts(torch.tensor([1.0, 1.0, 16.0]), 10, 100).tolist()
        [3, 3, 24]
    """
    if nprobe >= centroids:
        return torch.full((len(weights),), centroids, dtype=torch.long)
    share = weights.float() ** power
    return (nprobe * len(weights) * share / share.sum()).round().long().clamp(1, centroids)


MERGE_SIMILARITY = 0.95


def merge_tokens(query: Tensor, similarity: float = MERGE_SIMILARITY) -> tuple[Tensor, Tensor]:
    """Near-duplicate query tokens, grouped so that the probe reads each group's lists once.

    Query expansion pads queries with mask tokens whose vectors are close to one another, so many
    tokens would read the same lists. Each token joins the most similar earlier representative at
    cosine ``>= similarity``, or becomes one. The probe then scores each representative once,
    weighted by its group's size (see :func:`probe_counts`), which roughly halves the rows scored
    per query. Only the probe is approximate: candidates are rescored with every token. (The
    README's scale section gives the measured groups per query and the effect on recall and time.)

    Returns:
        ``(representatives, weights)``: the representatives' positions in ``query`` and, as float32,
        how many tokens each stands for (summing to ``len(query)``).

    Example::

        >>> merge_tokens(torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]]))
        (tensor([0, 2]), tensor([2., 1.]))
    """
    unit = torch.nn.functional.normalize(query.float(), dim=1)
    similarities = (unit @ unit.T).numpy()
    representatives: list[int] = []
    weights: list[float] = []
    for token in range(len(query)):
        if representatives:
            closest = int(np.argmax(similarities[token, representatives]))
            if similarities[token, representatives[closest]] >= similarity:
                weights[closest] += 1
                continue
        representatives.append(token)
        weights.append(1.0)
    return torch.tensor(representatives), torch.tensor(weights)


@functools.cache
def _threads() -> ThreadPoolExecutor:
    """The threads segments are probed on (the compiled probe releases the GIL): one per CPU core."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="latepool-probe")


def residual_table(codec: Codec, query: Tensor) -> np.ndarray:
    """``(T, B, 256)`` float32: per query token, the dot product of the residual packed in a byte at each position.

    ``B`` is the residual bytes per vector (0 without residuals). A row's residual score is the sum
    of ``table[t, j, residuals[row, j]]`` over its bytes.

    Example::

        >>> from latepool.index.codec import Codec
        >>> codec = Codec(torch.eye(4), 2, torch.tensor([-0.1, 0.0, 0.1]), torch.tensor([-0.2, -0.05, 0.05, 0.2]))
        >>> round(float(residual_table(codec, torch.tensor([[1.0, 0.0, 0.0, 2.0]]))[0, 0, 0b11_00_00_11]), 6)
        0.6
    """
    if not codec.bits:
        return np.zeros((len(query), 0, 256), dtype=np.float32)
    per_byte = 8 // codec.bits
    byte_weights = torch.from_numpy(codec.byte_weights)  # (256, per_byte)
    grouped = query.float().reshape(-1, per_byte)  # (T * B, per_byte)
    # the transposed weights made contiguous, so the product reads no strided operand
    return (grouped @ byte_weights.T.contiguous()).reshape(len(query), -1, 256).numpy()


def _probe_segment(view: SegmentView, probe: _Probe, base: float, keep: int | None = None) -> tuple[np.ndarray, Tensor]:
    """The live documents of one segment found by the probe and their stage-1 scores: all, ascending, or
    only the ``keep`` best, unordered. The best ``keep`` of all segments are among the best ``keep`` of each."""
    segment = view.segment
    found, gains = score_lists(
        probe.cells,
        probe.cell_scores,
        probe.floors,
        segment.ivf_offsets,
        np.asarray(segment.row_docs),
        np.asarray(segment.values),  # residual bytes, or float16 / int8 vectors
        probe.tables,
        view.live,
        None if segment.scales is None else np.asarray(segment.scales),
    )
    if keep is not None and len(found) > keep:  # the best keep, in no particular order
        best = np.argpartition(gains, len(found) - keep)[len(found) - keep :]
        return found[best].astype(np.int64), torch.from_numpy(gains[best] + base)
    order = np.argsort(found)
    return found[order].astype(np.int64), torch.from_numpy(gains[order] + base)


def _best_candidates(
    found: list[tuple[SegmentView, np.ndarray, Tensor]], count: int
) -> tuple[np.ndarray, np.ndarray, Tensor]:
    """The ``count`` best documents over all segments by stage-1 score, best first (equal scores in the order
    of ``found``): each one's segment (its position in ``found``), its document there, and its score."""
    scores = np.concatenate([segment_scores.numpy() for _, _, segment_scores in found])
    segment_of = np.repeat(np.arange(len(found)), [len(documents) for _, documents, _ in found])
    documents = np.concatenate([documents for _, documents, _ in found])
    best = np.arange(len(scores))
    if count < len(scores):  # select first, sort only the selected: there can be hundreds of thousands
        best = np.sort(np.argpartition(-scores, count - 1)[:count])
    best = best[np.argsort(-scores[best], kind="stable")]
    return segment_of[best], documents[best], torch.from_numpy(scores[best])


def _exact_scores(
    chosen: list[tuple[SegmentView, np.ndarray]], codec: Codec, query: Tensor, mapper=map
) -> tuple[Tensor, Tensor]:
    """Exact MaxSim of the documents chosen in each segment and their global ordinals. Each segment's
    stored rows are read through ``mapper`` (the segment threads: reads from the map fault pages in),
    then all are decoded and scored together: a few large tensor operations instead of a few per segment."""

    def read(item: tuple[SegmentView, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        segment, documents = item[0].segment, item[1]
        rows, lengths = document_rows(segment.offsets, documents)
        return segment.read_rows(rows), lengths

    parts = list(mapper(read, chosen))
    stored = {key: np.concatenate([arrays[key] for arrays, _ in parts]) for key in parts[0][0]}
    vectors = decode_values(stored, chosen[0][0].segment.dtype, codec)
    lengths = torch.from_numpy(np.concatenate([lengths for _, lengths in parts]))
    scores = maxsim_rows(vectors, lengths, query.float(), torch.ones(len(query), 1))[:, 0]
    ordinals = torch.from_numpy(np.concatenate([documents + view.base for view, documents in chosen]))
    return scores, ordinals
