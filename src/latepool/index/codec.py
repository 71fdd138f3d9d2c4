"""Vector codecs of an index: centroids for the inverted lists, and ColBERTv2-style residual coding.

Every index has centroids: each stored vector is filed under its most similar centroid (its
*code*), which the candidate stage of search uses. With a ``residualB`` dtype the vector itself is
stored as that code plus ``B`` bits per dimension (B in 1, 2, 4): the residual ``x - C[code]`` of
each dimension is bucketed by ``2^B - 1`` cutoffs shared by all dimensions (quantiles of held-out
residuals), and decoded as the bucket's weight (the mid-quantile of its bucket), so

    decode(x) = C[code] + weights[bucket(x - C[code])]      (no re-normalization: pooled vectors are
                                                              plain means, their norms matter)

A vector's code (its centroid, at most 65,536 of them) is not stored: segments store vectors
grouped by centroid, so it is implied by where the vector is (see :mod:`latepool.index.storage`).
What each stored vector costs, bookkeeping included, is
:func:`~latepool.index.storage.bytes_per_vector`; for ``residualB`` the codec's share is
``dim * B / 8`` bytes.

Example::

    >>> import torch
    >>> generator = torch.Generator().manual_seed(0)
    >>> vectors = torch.nn.functional.normalize(torch.randn(2000, 64, generator=generator), dim=-1)
    >>> codec = Codec.train(vectors, num_centroids=32, bits=2)
    >>> codes, residuals = codec.encode(vectors)
    >>> codes.dtype, residuals.shape
    (dtype('uint16'), (2000, 16))
    >>> decoded_error = (codec.decode(codes, residuals) - vectors).norm(dim=1).mean()
    >>> centroid_error = (vectors - codec.centroids[codes.astype("int64")]).norm(dim=1).mean()
    >>> bool(decoded_error < centroid_error)
    True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

MAX_CENTROIDS = 65536  # codes are stored as uint16


def default_num_centroids(num_vectors: int) -> int:
    """ColBERTv2's count: a power of two near ``16 * sqrt(num_vectors)``, between 16 and 65,536.

    Above :data:`TWO_LEVEL_ABOVE` centroids, :func:`train_centroids` trains in two levels, which
    keeps 65,536 centroids (PLAID's count from about 16M vectors on) within a minute on 2 CPU cores.

    Example::

        >>> default_num_centroids(10_000), default_num_centroids(10_000_000)
        (2048, 65536)
    """
    if num_vectors <= 0:
        return 0
    return int(min(max(2 ** round(math.log2(16 * math.sqrt(num_vectors))), 16), MAX_CENTROIDS, num_vectors))


def assign(vectors: Tensor, centroids: Tensor) -> Tensor:
    """Index of the most similar centroid (largest dot product) of every vector, ``(rows,)`` long.

    Vectors are scored in chunks of at most 2^24 similarities (64 MB).
    """
    if len(vectors) == 0:
        return torch.zeros(0, dtype=torch.long)
    vectors = vectors.float()
    chunk = max(2**24 // max(len(centroids), 1), 1)
    return torch.cat([(vectors[i : i + chunk] @ centroids.T).argmax(dim=1) for i in range(0, len(vectors), chunk)])


TWO_LEVEL_ABOVE = 8192  # more centroids than this are trained in two levels
POINTS_PER_CENTROID = 32  # training sample size per centroid


def train_centroids(
    vectors: Tensor,
    num_centroids: int,
    seed: int = 0,
    iterations: int = 8,
    points_per_centroid: int = POINTS_PER_CENTROID,
    in_place: bool = False,
) -> Tensor:
    """Spherical k-means centroids of (a sample of) ``vectors``; deterministic under ``seed``.

    Up to :data:`TWO_LEVEL_ABOVE` centroids, plain Lloyd iterations over all centroids. Beyond, in
    two levels, as hierarchical k-means does: about ``sqrt(num_centroids)`` coarse centroids
    first, then each coarse cell's vectors get their share of the centroids (in proportion to the
    cell's size) from their own k-means. A Lloyd iteration then compares each vector with a few
    hundred centroids instead of all of them.

    Args:
        vectors: ``(rows, dim)`` vectors.
        num_centroids: How many centroids (at most ``rows``).
        seed: Seed of the sample and of the initial centroids.
        iterations: Lloyd iterations (per level).
        points_per_centroid: Training sample size per centroid (the rest is not used).
        in_place: ``vectors`` may be normalized in place (no copy of the sample).

    Returns:
        ``(num_centroids, dim)`` unit-norm float32 centroids.
    """
    generator = torch.Generator().manual_seed(seed)
    sample = max(points_per_centroid * num_centroids, num_centroids)
    if len(vectors) > sample:
        vectors, in_place = vectors[torch.randperm(len(vectors), generator=generator)[:sample]], True  # a copy
    if in_place and vectors.dtype == torch.float32:  # what normalize computes, without a second copy
        vectors = vectors.div_(vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    else:
        vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
    if num_centroids <= TWO_LEVEL_ABOVE:
        return _lloyd(vectors, num_centroids, generator, iterations)
    coarse = _lloyd(vectors, 2 ** round(math.log2(math.sqrt(num_centroids))), generator, iterations)
    cells = assign(vectors, coarse)
    sizes = torch.bincount(cells, minlength=len(coarse))
    members = torch.argsort(cells, stable=True).split(sizes.tolist())
    shares = _shares(sizes.numpy(), num_centroids)
    return torch.cat(
        [_lloyd(vectors[rows], int(share), generator, iterations) for rows, share in zip(members, shares) if share]
    )


def _lloyd(vectors: Tensor, num_centroids: int, generator: torch.Generator, iterations: int) -> Tensor:
    """Spherical k-means of unit-norm ``vectors``, started from ``num_centroids`` of them drawn at random."""
    centroids = vectors[torch.randperm(len(vectors), generator=generator)[:num_centroids]].clone()
    for _ in range(iterations):
        codes = assign(vectors, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, codes, vectors)
        empty = torch.bincount(codes, minlength=len(centroids)) == 0
        sums[empty] = centroids[empty]  # an empty centroid stays where it is
        centroids = torch.nn.functional.normalize(sums, dim=-1)
    return centroids


def _shares(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` centroids over cells of ``sizes`` vectors in proportion, none over its size.

    Example::

        >>> _shares(np.array([50, 30, 20]), 10).tolist()
        [5, 3, 2]
    """
    shares = np.minimum(sizes * total // max(int(sizes.sum()), 1), sizes)
    while shares.sum() < total:  # the remainder, one at a time, to the cells with most vectors per centroid
        shares[np.argmax(np.where(shares < sizes, sizes / (shares + 1), -1))] += 1
    return shares


@dataclass
class CentroidGroups:
    """Centroids grouped into coarse groups, to find a vector's nearest centroid without scoring them all.

    A vector is compared with the group centroids, then only with the members of its ``probes``
    most similar groups: with 8,192 centroids, 64 groups and 8 probes, an eighth of the centroids;
    with 65,536, 128 groups and 4 probes, a 32nd. Assignment is then approximate: most vectors get
    their most similar centroid, a few a close second (``benchmarks/codec_assign.py`` measures how
    many, and the speed-up; the README gives its figures). With at most :data:`EXACT_ASSIGN_BELOW`
    centroids every centroid is scored.

    Attributes:
        centroids: ``(C, dim)`` centroids.
        group_centroids: ``(G, dim)`` group centroids (empty when assignment is exact).
        members: Per group, the ids of its centroids.
        probes: Groups searched per vector.
    """

    centroids: Tensor
    group_centroids: Tensor
    members: list[Tensor]
    probes: int

    @classmethod
    def of(cls, centroids: Tensor) -> CentroidGroups:
        """Group ``centroids`` (deterministic: spherical k-means of the centroids themselves, seed 0).

        A power of two near ``sqrt(C) / 1.5`` groups; 8 of them probed, or 4 above
        :data:`TWO_LEVEL_ABOVE` centroids.
        """
        probes = 8 if len(centroids) <= TWO_LEVEL_ABOVE else 4
        if len(centroids) <= EXACT_ASSIGN_BELOW:
            return cls(centroids, centroids[:0], [], probes)
        groups = 2 ** round(math.log2(math.sqrt(len(centroids)) / 1.5))
        group_centroids = train_centroids(centroids, groups, iterations=10, points_per_centroid=len(centroids))
        member = assign(centroids, group_centroids)
        return cls(centroids, group_centroids, [torch.nonzero(member == g).flatten() for g in range(groups)], probes)

    def assign(self, vectors: Tensor, chunk: int = 65536) -> Tensor:
        """``(rows,)`` long: the (near-)most similar centroid of every vector."""
        if not self.members:
            return assign(vectors, self.centroids)
        vectors = vectors.float()
        return torch.cat([self._assign_block(vectors[i : i + chunk]) for i in range(0, len(vectors), chunk)])

    def _assign_block(self, block: Tensor) -> Tensor:
        best_scores = torch.full((len(block),), -torch.inf)
        best_codes = torch.zeros(len(block), dtype=torch.long)
        probed = (block @ self.group_centroids.T).topk(min(self.probes, len(self.members)), dim=1).indices
        for group in probed.T:  # each vector's best group, then its second best, ...
            counts = torch.bincount(group, minlength=len(self.members)).tolist()
            for rows, candidates in zip(torch.argsort(group).split(counts), self.members):
                if len(rows) and len(candidates):
                    scores, best = (block[rows] @ self.centroids[candidates].T).max(dim=1)
                    better = scores > best_scores[rows]
                    best_scores[rows[better]] = scores[better]
                    best_codes[rows[better]] = candidates[best[better]]
        return best_codes


ENCODE_BLOCK_ROWS = 65536  # vectors encoded at a time (their temporaries, not the batch's, in memory)
EXACT_ASSIGN_BELOW = 1024  # with at most this many centroids, assignment scores every centroid


@dataclass
class Codec:
    """Centroids, and for residual coding the bucket cutoffs and weights.

    Attributes:
        centroids: ``(C, dim)`` float32 unit-norm centroids.
        bits: Residual bits per dimension (0: vectors are stored elsewhere, only codes here).
        cutoffs: ``(2^bits - 1,)`` float32 bucket boundaries of a residual coordinate.
        weights: ``(2^bits,)`` float32 decoded value of each bucket.
    """

    centroids: Tensor
    bits: int = 0
    cutoffs: Tensor | None = None
    weights: Tensor | None = None

    @classmethod
    def train(
        cls,
        vectors: Tensor,
        num_centroids: int | None = None,
        bits: int = 0,
        seed: int = 0,
        held_out: int = 50_000,
        consume: bool = False,
    ) -> Codec:
        """Train centroids on ``vectors`` and, for ``bits > 0``, the residual buckets on held-out vectors.

        Args:
            vectors: ``(rows, dim)`` training vectors (a sample of the corpus is enough).
            num_centroids: Centroids (default :func:`default_num_centroids`).
            bits: 0, 1, 2 or 4.
            seed: Seed of sampling and initialization.
            held_out: Vectors whose residuals set the cutoffs and weights.
            consume: ``vectors`` may be overwritten (normalized in place): no copy of the sample is
                made, for a caller that drops it afterwards.
        """
        if bits not in (0, 1, 2, 4):
            raise ValueError(f"bits must be 0, 1, 2 or 4, got {bits}")
        num_centroids = min(num_centroids or default_num_centroids(len(vectors)), MAX_CENTROIDS)
        residual_sample = _held_out(vectors, seed, held_out) if bits else vectors[:0]
        centroids = train_centroids(vectors, num_centroids, seed=seed, in_place=consume)
        return cls(centroids).with_bits(bits, residual_sample, seed=seed, held_out=held_out)

    def with_bits(self, bits: int, vectors: Tensor, seed: int = 0, held_out: int = 50_000) -> Codec:
        """A codec with the same centroids and ``bits``-bit residual buckets fitted on (a sample of) ``vectors``.

        The cutoffs are the ``i / 2^bits`` quantiles of the residual coordinates of ``held_out``
        vectors (all dimensions pooled), the weights the ``(i + 0.5) / 2^bits`` quantiles.
        """
        if bits == 0:
            return Codec(self.centroids)
        sample = _held_out(vectors, seed, held_out)
        residuals = (sample - self.centroids[self._groups.assign(sample)]).flatten()  # as encode assigns
        levels = 2**bits
        cutoffs = _quantiles(residuals, torch.arange(1, levels) / levels)
        weights = _quantiles(residuals, (torch.arange(levels) + 0.5) / levels)
        codec = Codec(self.centroids, bits, cutoffs, weights)
        codec.__dict__["_groups"] = self._groups  # the same centroids: share their grouping, not redo it
        return codec

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def assign(self, vectors: Tensor) -> np.ndarray:
        """``(rows,)`` uint16 codes: the most similar centroid of each vector (see :class:`CentroidGroups`)."""
        return self._groups.assign(vectors).numpy().astype(np.uint16)

    @functools.cached_property
    def _groups(self) -> CentroidGroups:
        return CentroidGroups.of(self.centroids)

    def encode(self, vectors: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, residuals)``: ``(rows,)`` uint16 and ``(rows, dim * bits / 8)`` uint8 packed buckets."""
        if not self.bits:
            raise ValueError("this codec stores codes only (bits = 0)")
        if self.dim * self.bits % 8:
            raise ValueError(f"dim * bits must be a multiple of 8, got {self.dim} * {self.bits}")
        codes, packed = [], []
        for start in range(0, len(vectors), ENCODE_BLOCK_ROWS):  # bounded temporaries for any batch
            block = vectors[start : start + ENCODE_BLOCK_ROWS].float()
            block_codes = self._groups.assign(block)
            buckets = torch.bucketize(block - self.centroids[block_codes], self.cutoffs).to(torch.uint8).numpy()
            codes.append(block_codes.numpy().astype(np.uint16))
            packed.append(pack_buckets(buckets, self.bits))
        if not codes:
            return np.zeros(0, np.uint16), np.zeros((0, self.dim * self.bits // 8), np.uint8)
        return np.concatenate(codes), np.concatenate(packed)

    def decode(self, codes: np.ndarray, residuals: np.ndarray) -> Tensor:
        """``(rows, dim)`` float32 vectors from codes and packed residual buckets.

        Each packed byte is looked up once in a ``(256, 8 / bits)`` table of bucket weights.
        """
        residuals = np.asarray(residuals)
        values = np.take(self.byte_weights, residuals, axis=0).reshape(len(residuals), self.dim)
        vectors = self.centroids.index_select(0, torch.from_numpy(np.asarray(codes).astype(np.int64, copy=False)))
        return vectors.add_(torch.from_numpy(values))  # take / index_select: gathers without [] indexing's copies

    @functools.cached_property
    def byte_weights(self) -> np.ndarray:
        """``(256, 8 / bits)`` float32: the decoded residual values packed in each possible byte."""
        return self.weights.numpy()[_unpack_table(self.bits)]

    def save(self, path: Path) -> None:
        """Write the codec as one ``.npz`` file (written to a temporary name, then renamed)."""
        arrays = {"centroids": self.centroids.numpy(), "bits": np.array(self.bits)}
        if self.bits:
            arrays |= {"cutoffs": self.cutoffs.numpy(), "weights": self.weights.numpy()}
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, **arrays)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> Codec:
        with np.load(path) as data:
            bits = int(data["bits"])
            centroids = torch.from_numpy(data["centroids"].astype(np.float32))
            if not bits:
                return cls(centroids)
            return cls(centroids, bits, torch.from_numpy(data["cutoffs"]), torch.from_numpy(data["weights"]))


def _held_out(vectors: Tensor, seed: int, held_out: int) -> Tensor:
    """The ``held_out`` vectors (a copy, float32) whose residuals fit the buckets, drawn under ``seed``.

    Drawing them again from themselves gives the same set, in another order (the quantiles do not
    depend on it).
    """
    generator = torch.Generator().manual_seed(seed + 1)
    return vectors[torch.randperm(len(vectors), generator=generator)[:held_out]].float()


def pack_buckets(buckets: np.ndarray, bits: int) -> np.ndarray:
    """``(rows, dim)`` bucket indices in ``[0, 2^bits)`` -> ``(rows, dim * bits / 8)`` uint8, lowest bits first.

    Example::

        >>> pack_buckets(np.array([[1, 2, 3, 0]], dtype=np.uint8), 2).tolist()
        [[57]]
    """
    rows, dim = buckets.shape
    planes = (buckets[:, :, None] >> np.arange(bits, dtype=np.uint8)) & 1  # (rows, dim, bits)
    return np.packbits(planes.reshape(rows, dim * bits), axis=1, bitorder="little")


@functools.cache
def _unpack_table(bits: int) -> np.ndarray:
    """``(256, 8 / bits)`` uint8: the buckets packed in each possible byte, lowest bits first."""
    per_byte = 8 // bits
    values = np.arange(256, dtype=np.uint16)[:, None] >> (bits * np.arange(per_byte, dtype=np.uint16))
    return (values & (2**bits - 1)).astype(np.uint8)


def _quantiles(values: Tensor, q: Tensor) -> Tensor:
    """Quantiles by sorting (``torch.quantile`` refuses large inputs)."""
    ordered = values.sort().values
    positions = (q * (len(ordered) - 1)).round().long().clamp(0, len(ordered) - 1)
    return ordered[positions].float().contiguous()
