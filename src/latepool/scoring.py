"""Exact MaxSim search: every query against every document, in bounded-memory tiles, top-k kept.

Documents are sorted by length and packed into padded blocks once (:class:`PackedDocuments`); each
tile is then one matrix product of a block of query tokens with a block of document tokens and a
max over each document's tokens. Padding never wins the max: every vector gets one extra
coordinate, 1 for query tokens and 0 for real document tokens but ``-inf``-like for padding, so the
product itself masks it and no mask is applied per tile.

latepool has a second exact MaxSim, :func:`latepool.index.search.maxsim_rows`, on purpose: this one
scores documents held in memory (the evaluation's sweep, on CPU or GPU), where packing once and
tiling pays; the index's scores rows read from memory-mapped segments a chunk at a time, unpadded,
with the per-document maxima in a compiled loop, since padding a million stored documents would
cost memory the index does not have. Both compute ``sum_q max_d q . d``; ``tests/test_search.py``
checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_PAD_SCORE = -1.0e4  # added to every padding token's similarity; far below any cosine
DEFAULT_TILE_ELEMENTS = 1_000_000  # similarity entries per tile (4 MB in float32: stays in cache)
DEFAULT_BLOCK_TOKENS = 512  # padded document tokens per block


@dataclass
class PackedDocuments:
    """Documents packed for scoring: blocks of similar length, padded, with the masking coordinate.

    Attributes:
        blocks: ``(docs_in_block, max_len, dim + 1)`` float32 tensors.
        block_ids: For each block, the ``(docs_in_block,)`` original indices of its documents.
        count: Number of documents.
    """

    blocks: list[Tensor]
    block_ids: list[Tensor]
    count: int

    @classmethod
    def pack(
        cls, documents: list[Tensor], block_tokens: int = DEFAULT_BLOCK_TOKENS, device: str | torch.device | None = None
    ) -> PackedDocuments:
        """Sort ``documents`` (a list of ``(n_i, dim)`` tensors) by length and pad them in blocks.

        Args:
            documents: Token embeddings per document (any float dtype; scored in float32).
            block_tokens: Padded document tokens per block (the width of a tile).
            device: Where the blocks live (default: the first document's device).

        Returns:
            The packed documents.
        """
        if not documents:
            raise ValueError("no documents to score")
        dims = {int(document.shape[-1]) for document in documents}
        if len(dims) != 1 or any(document.ndim != 2 for document in documents):
            raise ValueError(f"documents must be (n_i, dim) tensors of one dimension, got dimensions {sorted(dims)}")
        device = device or documents[0].device
        lengths = torch.tensor([len(document) for document in documents])
        order = torch.argsort(lengths, stable=True).tolist()
        blocks, block_ids, start = [], [], 0
        while start < len(order):
            stop = start + 1
            while stop < len(order) and (stop - start + 1) * max(int(lengths[order[stop]]), 1) <= block_tokens:
                stop += 1
            members = order[start:stop]
            blocks.append(pad_block([documents[i] for i in members], device))
            block_ids.append(torch.tensor(members, device=device))
            start = stop
        return cls(blocks, block_ids, len(documents))


def pad_block(documents: list[Tensor], device: str | torch.device) -> Tensor:
    """``(count, max_len, dim + 1)`` float32 documents with the masking coordinate (0 real, very negative padding)."""
    width = max(max(len(document) for document in documents), 1)
    dim = documents[0].shape[-1]
    block = torch.zeros(len(documents), width, dim + 1, device=device)
    block[:, :, dim] = _PAD_SCORE
    for row, document in enumerate(documents):
        block[row, : len(document), :dim] = document.to(device=device, dtype=torch.float32)
        block[row, : len(document), dim] = 0.0
    return block


def pack_queries(queries: list[Tensor] | Tensor, device: str | torch.device | None = None) -> Tensor:
    """Queries as ``(nq, max_len, dim + 1)`` float32 with the masking coordinate 1.

    Padding rows are all zero: their similarity with every real document token is 0, so they add
    nothing to a query's sum and variable-length queries need no mask.
    """
    if isinstance(queries, Tensor):
        if queries.ndim != 3:
            raise ValueError(f"queries must be (nq, len, dim) or a list of (len_i, dim), got {tuple(queries.shape)}")
        queries = list(queries)
    if not queries:
        raise ValueError("no queries to score")
    device = device or queries[0].device
    width, dim = max(len(query) for query in queries), queries[0].shape[-1]
    packed = torch.zeros(len(queries), width, dim + 1, device=device)
    for row, query in enumerate(queries):
        if query.ndim != 2 or query.shape[-1] != dim:
            raise ValueError(f"query {row} has shape {tuple(query.shape)}, expected (len, {dim})")
        packed[row, : len(query), :dim] = query.to(device=device, dtype=torch.float32)
        packed[row, : len(query), dim] = 1.0
    return packed


def maxsim_scores(queries: Tensor, documents: PackedDocuments, tile_elements: int = DEFAULT_TILE_ELEMENTS) -> Tensor:
    """Exact MaxSim of every query against every document.

    Args:
        queries: Packed queries from :func:`pack_queries`, ``(nq, len, dim + 1)``.
        documents: Packed documents of the same ``dim``.
        tile_elements: Bound on similarity entries held at once (peak memory ~ 4 bytes each).

    Returns:
        ``(nq, num_documents)`` float32 scores, documents in their original order.

    Example::

        >>> q = pack_queries([torch.tensor([[1.0, 0.0]])])
        >>> d = PackedDocuments.pack([torch.tensor([[0.5, 0.5], [1.0, 0.0]]), torch.tensor([[0.0, 1.0]])])
        >>> maxsim_scores(q, d).tolist()
        [[1.0, 0.0]]
    """
    if queries.shape[-1] != documents.blocks[0].shape[-1]:
        raise ValueError(
            f"query dimension {queries.shape[-1] - 1} does not match "
            f"document dimension {documents.blocks[0].shape[-1] - 1}"
        )
    num_queries, query_len, width = queries.shape
    scores = torch.empty(num_queries, documents.count, device=queries.device)
    for block, ids in zip(documents.blocks, documents.block_ids):
        docs_in_block, doc_len, _ = block.shape
        doc_tokens = block.reshape(-1, width).T.to(queries.device)
        step = max(1, tile_elements // max(query_len * docs_in_block * doc_len, 1))
        for start in range(0, num_queries, step):
            rows = queries[start : start + step].reshape(-1, width)
            similarity = (rows @ doc_tokens).view(-1, query_len, docs_in_block, doc_len)
            scores[start : start + step, ids.to(queries.device)] = similarity.amax(dim=3).sum(dim=1)
    return scores


def maxsim_topk(
    queries: list[Tensor] | Tensor,
    documents: list[Tensor] | PackedDocuments,
    k: int,
    tile_elements: int = DEFAULT_TILE_ELEMENTS,
    query_batch: int = 512,
) -> tuple[Tensor, Tensor]:
    """Top-k documents of every query by exact MaxSim.

    Args:
        queries: A list of ``(len_i, dim)`` query embeddings or a ``(nq, len, dim)`` tensor.
        documents: A list of ``(n_i, dim)`` document embeddings, or already packed.
        k: Documents kept per query (capped at the number of documents).
        tile_elements: Memory bound of one tile (see :func:`maxsim_scores`).
        query_batch: Queries scored per pass (bounds the ``(batch, num_documents)`` score matrix).

    Returns:
        ``(scores, indices)``, both ``(nq, k)``, best first.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    packed_documents = documents if isinstance(documents, PackedDocuments) else PackedDocuments.pack(documents)
    packed_queries = pack_queries(queries)
    k = min(k, packed_documents.count)
    top_scores, top_ids = [], []
    for start in range(0, len(packed_queries), query_batch):
        scores = maxsim_scores(packed_queries[start : start + query_batch], packed_documents, tile_elements)
        best = scores.topk(k, dim=1)
        top_scores.append(best.values)
        top_ids.append(best.indices)
    return torch.cat(top_scores), torch.cat(top_ids)
