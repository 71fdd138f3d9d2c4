"""MUVERA fixed dimensional encodings: one dense vector per multi-vector document or query.

The inner product of a query's encoding with a document's approximates their Chamfer (MaxSim)
similarity, so an ordinary single-vector index (HNSW) can preselect candidates that are then
rescored by exact MaxSim (Dhulipala et al., "MUVERA", 2024). Per repetition ``r``:

- SimHash: ``k_sim`` random Gaussian hyperplanes put each vector in one of ``B = 2^k_sim`` partitions
  (its sign bits, read as a binary number);
- a dense random ``+-1 / sqrt(d_proj)`` projection shortens each vector to ``d_proj`` values;
- a query's block ``p`` is the *sum* of its projected vectors in partition ``p``; a document's block
  is their *mean*, and an empty document block takes the projected vector whose partition bits are
  closest (Hamming) to ``p``'s.

The encoding concatenates the ``R * B`` blocks: ``R * 2^k_sim * d_proj`` values. Queries and
documents must use the same :class:`FDEConfig` (dimension and seed included).

Example::

    >>> import torch
    >>> config = FDEConfig(dim=8, k_sim=2, d_proj=4, repetitions=3)
    >>> docs = [torch.nn.functional.normalize(torch.randn(5, 8), dim=-1) for _ in range(2)]
    >>> encode_documents(docs, config).shape, encode_queries(docs[:1], config).shape
    (torch.Size([2, 48]), torch.Size([1, 48]))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor


@dataclass(frozen=True)
class FDEConfig:
    """The encoding's shape and randomness.

    Attributes:
        dim: Dimension of the token vectors.
        k_sim: SimHash bits per repetition (``2^k_sim`` partitions).
        d_proj: Values per block after the random projection.
        repetitions: Independent repetitions (R).
        seed: Seed of the hyperplanes and projections.
    """

    dim: int
    k_sim: int = 4
    d_proj: int = 8
    repetitions: int = 8
    seed: int = 0

    @property
    def size(self) -> int:
        """Length of an encoding: ``R * 2^k_sim * d_proj``."""
        return self.repetitions * (2**self.k_sim) * self.d_proj

    @cached_property
    def matrices(self) -> tuple[Tensor, Tensor]:
        """``(hyperplanes (R, dim, k_sim), projections (R, dim, d_proj))``, drawn from ``seed``."""
        generator = torch.Generator().manual_seed(self.seed)
        hyperplanes = torch.randn(self.repetitions, self.dim, self.k_sim, generator=generator)
        signs = torch.randint(0, 2, (self.repetitions, self.dim, self.d_proj), generator=generator) * 2 - 1
        return hyperplanes, signs.float() / self.d_proj**0.5


def encode_queries(queries: list[Tensor], config: FDEConfig) -> Tensor:
    """``(len(queries), config.size)`` encodings of ``(n_i, dim)`` queries (block sums)."""
    return _encode(queries, config, average=False)


def encode_documents(documents: list[Tensor], config: FDEConfig) -> Tensor:
    """``(len(documents), config.size)`` encodings of ``(n_i, dim)`` documents (block means, empty blocks filled)."""
    return _encode(documents, config, average=True)


def _encode(sets: list[Tensor], config: FDEConfig, average: bool) -> Tensor:
    if any(s.ndim != 2 or s.shape[1] != config.dim or len(s) == 0 for s in sets):
        raise ValueError(f"every set must be a non-empty (n, {config.dim}) tensor")
    vectors = torch.cat([s.float() for s in sets])
    owner = torch.repeat_interleave(torch.arange(len(sets)), torch.tensor([len(s) for s in sets]))
    partitions = 2**config.k_sim
    hyperplanes, projections = config.matrices
    powers = 2 ** torch.arange(config.k_sim)
    blocks = []
    for repetition in range(config.repetitions):
        bits = (vectors @ hyperplanes[repetition] > 0).long()  # (rows, k_sim)
        partition = (bits * powers).sum(dim=1)  # (rows,)
        projected = vectors @ projections[repetition]  # (rows, d_proj)
        slot = owner * partitions + partition
        sums = torch.zeros(len(sets) * partitions, config.d_proj).index_add_(0, slot, projected)
        if average:
            counts = torch.bincount(slot, minlength=len(sets) * partitions)
            sums = sums / counts.clamp(min=1)[:, None]
            sums = _fill_empty(sums, counts == 0, partition, owner, projected, partitions, config.k_sim)
        blocks.append(sums.view(len(sets), partitions * config.d_proj))
    return torch.cat(blocks, dim=1)


def _fill_empty(
    blocks: Tensor, empty: Tensor, partition: Tensor, owner: Tensor, projected: Tensor, partitions: int, k_sim: int
) -> Tensor:
    """Give each empty document block the projected vector of the document nearest to it in partition bits."""
    if not empty.any():
        return blocks
    every = torch.arange(partitions)
    differing = partition[:, None] ^ every[None, :]  # (rows, B)
    hamming = sum(((differing >> bit) & 1) for bit in range(k_sim))
    rows = len(partition)
    key = hamming * rows + torch.arange(rows)[:, None]  # nearest first, then the first such row
    best = torch.full((int(owner.max()) + 1, partitions), hamming.new_tensor(partitions * rows + rows).item())
    best = best.scatter_reduce(0, owner[:, None].expand(-1, partitions), key, reduce="amin", include_self=True)
    chosen = (best % rows).flatten()  # (D * B,) the row each block would take
    filled = blocks.clone()
    filled[empty] = projected[chosen[empty]]
    return filled
