"""Candidate generation for large indexes: centroids, inverted lists of vectors, partial MaxSim.

Every pooled vector is filed under its most similar centroid. A query probes, for each of its
tokens, the ``nprobe`` centroids most similar to it, and scores every document that has a vector
in a probed list by MaxSim over those vectors only (exact dot products, no approximation of the
vectors themselves; a token with no probed vector in a document counts its similarity to the
least similar centroid it probed). The best
``rescore`` documents are then scored exactly over all their vectors. Work per query grows with the
probed share of the index, ``~ len(query) * nprobe / num_centroids``, not with its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from latepool.scoring import pack_queries, pad_block


def default_num_centroids(num_vectors: int) -> int:
    """A power of two near ``4 * sqrt(num_vectors)``, between 16 and 65,536 (at most one per vector)."""
    if num_vectors <= 0:
        return 0
    return int(min(max(2 ** round(math.log2(4 * math.sqrt(num_vectors))), 16), 65536, num_vectors))


def train_centroids(
    vectors: Tensor, num_centroids: int, seed: int = 0, iterations: int = 10, sample: int = 65536
) -> Tensor:
    """Spherical k-means centroids of (a sample of) ``vectors``; deterministic under ``seed``.

    Args:
        vectors: ``(rows, dim)`` float32.
        num_centroids: How many centroids (at most ``rows``).
        seed: Seed of the sample and of the initial centroids.
        iterations: Lloyd iterations.
        sample: Vectors used for training.

    Returns:
        ``(num_centroids, dim)`` unit-norm float32 centroids.
    """
    generator = torch.Generator().manual_seed(seed)
    if len(vectors) > sample:
        vectors = vectors[torch.randperm(len(vectors), generator=generator)[:sample]]
    vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
    centroids = vectors[torch.randperm(len(vectors), generator=generator)[:num_centroids]].clone()
    for _ in range(iterations):
        codes = assign(vectors, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, codes, vectors)
        empty = torch.bincount(codes, minlength=len(centroids)) == 0
        sums[empty] = centroids[empty]  # an empty centroid stays where it is
        centroids = torch.nn.functional.normalize(sums, dim=-1)
    return centroids


def assign(vectors: Tensor, centroids: Tensor, chunk: int = 65536) -> Tensor:
    """Index of the most similar centroid of every vector, ``(rows,)`` long."""
    if len(vectors) == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([(vectors[i : i + chunk] @ centroids.T).argmax(dim=1) for i in range(0, len(vectors), chunk)])


@dataclass
class CandidateIndex:
    """Inverted lists of vectors by centroid.

    Attributes:
        centroids: ``(C, dim)`` centroids.
        vectors: ``(rows, dim)`` all live vectors, grouped by centroid.
        vector_docs: ``(rows,)`` document index of each of those vectors.
        list_offsets: ``(C + 1,)``: centroid ``c``'s vectors are rows ``list_offsets[c]:list_offsets[c + 1]``.
        padded: ``(num_docs, max_len, dim + 1)`` documents for exact rescoring, with the masking
            coordinate of :mod:`latepool.scoring` (0 for real vectors, a large negative for padding).
    """

    centroids: Tensor
    vectors: Tensor
    vector_docs: Tensor
    list_offsets: Tensor
    padded: Tensor

    @classmethod
    def build(cls, documents: list[Tensor], centroids: Tensor) -> CandidateIndex:
        """File every vector of ``documents`` under its nearest centroid."""
        lengths = torch.tensor([len(d) for d in documents], dtype=torch.long)
        vectors = torch.cat(documents).float() if documents else torch.zeros(0, centroids.shape[1])
        codes = assign(vectors, centroids)
        order = torch.argsort(codes, stable=True)
        offsets = torch.zeros(len(centroids) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.bincount(codes, minlength=len(centroids)), 0)
        docs = torch.repeat_interleave(torch.arange(len(documents)), lengths)
        padded = pad_block(documents, "cpu") if documents else torch.zeros(0, 1, centroids.shape[1] + 1)
        return cls(centroids, vectors[order].contiguous(), docs[order].contiguous(), offsets, padded)

    def rescore(self, query: Tensor, docs: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Exact MaxSim of one query against the documents ``docs``; returns the top-k (scores, docs)."""
        extended = pack_queries([query])[0]  # (len, dim + 1), the masking coordinate set
        scores = (self.padded[docs] @ extended.T).amax(dim=1).sum(dim=1)
        best = scores.topk(min(k, len(docs)))
        return best.values, docs[best.indices]

    def candidates(self, query: Tensor, nprobe: int, rescore: int) -> Tensor:
        """Indices of the ``rescore`` documents with the best partial MaxSim for one ``(len, dim)`` query."""
        query = query.float()
        nearest = (query @ self.centroids.T).topk(min(nprobe, len(self.centroids)), dim=1)
        probed = nearest.indices.unique()
        starts, stops = self.list_offsets[probed], self.list_offsets[probed + 1]
        rows = torch.cat([torch.arange(a, b) for a, b in zip(starts.tolist(), stops.tolist())])
        if len(rows) == 0:
            return rows
        docs, local = torch.unique(self.vector_docs[rows], return_inverse=True)
        similarity = query @ self.vectors[rows].T  # (len, m)
        # a token's similarity to a document with no vector in the probed lists is imputed with the
        # token's similarity to its least similar probed centroid
        floor = nearest.values[:, -1:].expand(-1, len(docs)).contiguous()
        best = floor.scatter_reduce(1, local.expand(len(query), -1), similarity, reduce="amax", include_self=True)
        scores = best.sum(dim=0)
        return docs[scores.topk(min(rescore, len(docs))).indices]
