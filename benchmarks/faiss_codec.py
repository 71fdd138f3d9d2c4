"""latepool's codec parts against faiss-cpu's, side by side: centroid training, assignment, residual coding.

The issue asked to use faiss where it beats hand-written code. This measures each part both ways
in one process, on the real pooled vectors of the scale proxy (SciFact, NFCorpus and MEDLINE test
corpora, MiniLM ColBERT, k-means PF4; see ``search_scale.py``) plus ``--synthetic`` synthetic
documents mixed from them:

- *training* ``--centroids`` spherical k-means centroids, 8 iterations, 32 points per centroid:
  latepool's :func:`~latepool.index.codec.train_centroids` against ``faiss.Kmeans``, both in two
  levels above 8,192 centroids (faiss's own ``two_level_clustering`` fixes other iteration counts).
  Quality: the mean dot product of held-out vectors with their most similar centroid.
- *assignment* of held-out vectors to those centroids: latepool's grouped assignment against
  faiss's exact ``IndexFlatIP`` and an HNSW graph over the centroids (``IndexHNSWFlat``, M 32).
- *coding* at 16 bytes of residual per vector: latepool's ``residual2`` (2 bits per dimension,
  ColBERTv2's buckets) against faiss's ``IndexIVFPQ`` on the same centroids (16 sub-quantizers of
  8 bits, by residual). Quality: cosine of decoded and original vectors, and the mean absolute
  error of query-token dot products.

Needs ``pip install faiss-cpu`` (not a latepool dependency). Prints what it measured.

    python benchmarks/faiss_codec.py --centroids 8192,65536 --synthetic 40000
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
import torch

from latepool.index.codec import TWO_LEVEL_ABOVE, CentroidGroups, Codec, assign, train_centroids
from latepool.options import DEFAULT_CACHE_DIR
from search_scale import proxy_vectors, real_collections


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def coverage(vectors: torch.Tensor, centroids: torch.Tensor) -> float:
    """Mean dot product of unit-normed ``vectors`` with their most similar centroid."""
    normed = torch.nn.functional.normalize(vectors, dim=-1)
    return float((normed * centroids[assign(normed, centroids)]).sum(dim=1).mean())


def faiss_centroids(vectors: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """faiss's spherical k-means on the same sample and iterations as latepool's (two levels above 8,192)."""
    generator = torch.Generator().manual_seed(seed)
    sample = vectors[torch.randperm(len(vectors), generator=generator)[: 32 * count]]
    sample = torch.nn.functional.normalize(sample, dim=-1).numpy()
    if count <= TWO_LEVEL_ABOVE:
        return torch.from_numpy(_kmeans(sample, count, seed))
    coarse = _kmeans(sample, 2 ** round(np.log2(np.sqrt(count))), seed)
    index = faiss.IndexFlatIP(sample.shape[1])
    index.add(coarse)
    cells = index.search(sample, 1)[1][:, 0]
    sizes = np.bincount(cells, minlength=len(coarse))
    shares = np.diff(np.cumsum(sizes) * count // len(sample), prepend=0)  # as faiss's two_level_clustering
    parts = [_kmeans(sample[cells == cell], int(share), seed) for cell, share in enumerate(shares) if share]
    return torch.from_numpy(np.vstack(parts))


def _kmeans(sample: np.ndarray, count: int, seed: int) -> np.ndarray:
    options = {"niter": 8, "spherical": True, "seed": seed, "max_points_per_centroid": 32, "min_points_per_centroid": 1}
    kmeans = faiss.Kmeans(sample.shape[1], count, **options)
    kmeans.train(sample)
    return kmeans.centroids


def compare_assignment(test: torch.Tensor, centroids: torch.Tensor) -> None:
    exact, exact_s = timed(assign, test, centroids)
    groups, grouping_s = timed(CentroidGroups.of, centroids)
    grouped, grouped_s = timed(groups.assign, test)
    flat = faiss.IndexFlatIP(centroids.shape[1])
    flat.add(centroids.numpy())
    (_, flat_codes), flat_s = timed(flat.search, test.numpy(), 1)
    hnsw = faiss.IndexHNSWFlat(centroids.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efSearch = 64
    _, hnsw_build_s = timed(hnsw.add, centroids.numpy())
    (_, hnsw_codes), hnsw_s = timed(hnsw.search, test.numpy(), 1)
    per = 1e6 / len(test)
    print(f"  assignment of {len(test)} vectors (us/vector; same centroid as exact):")
    print(f"    torch exact (all centroids)       {exact_s * per:8.2f}")
    print(f"    faiss IndexFlatIP (exact)         {flat_s * per:8.2f}  {_same(flat_codes[:, 0], exact):.4f}")
    print(
        f"    latepool grouped ({len(groups.members)} groups, {groups.probes} probes) "
        f"{grouped_s * per:8.2f}  {_same(grouped.numpy(), exact):.4f}  (+{grouping_s:.1f} s grouping)"
    )
    print(
        f"    faiss HNSW (M 32, efSearch 64)    {hnsw_s * per:8.2f}  {_same(hnsw_codes[:, 0], exact):.4f}  "
        f"(+{hnsw_build_s:.1f} s graph)"
    )


def _same(codes: np.ndarray, exact: torch.Tensor) -> float:
    return float((torch.from_numpy(codes.astype(np.int64)) == exact).float().mean())


def compare_coding(train: torch.Tensor, test: torch.Tensor, centroids: torch.Tensor, queries: torch.Tensor) -> None:
    codec = Codec(centroids).with_bits(2, train)
    (codes, residuals), encode_s = timed(codec.encode, test)
    ours = codec.decode(codes, residuals)
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    ivfpq = faiss.IndexIVFPQ(quantizer, centroids.shape[1], len(centroids), residuals.shape[1], 8)
    ivfpq.quantizer.add(centroids.numpy())
    ivfpq.is_trained = False
    sample = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:100_000]]
    _, pq_train_s = timed(ivfpq.train, sample.numpy())
    packed, pq_encode_s = timed(ivfpq.sa_encode, test.numpy())
    theirs = torch.from_numpy(ivfpq.sa_decode(packed))
    print(f"  coding of {len(test)} vectors, 16 B of residual each (cosine to original; mean |dot error|):")
    for name, decoded, seconds in (
        ("latepool residual2 (buckets)", ours, encode_s),
        (f"faiss IVFPQ 16x8 (+{pq_train_s:.0f} s PQ training)", theirs, pq_encode_s),
    ):
        cosine = float(torch.nn.functional.cosine_similarity(decoded, test).mean())
        error = float(((decoded - test) @ queries.T).abs().mean())
        print(f"    {name:<44} {cosine:.4f}  {error:.4f}  encode {seconds / len(test) * 1e6:.2f} us/vector")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--centroids", default="8192,65536", help="Comma-separated centroid counts.")
    parser.add_argument("--synthetic", type=int, default=40_000, help="Synthetic documents added to the real ones.")
    parser.add_argument("--test", type=int, default=50_000, help="Held-out vectors assigned and coded.")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="Embedding cache.")
    args = parser.parse_args()
    _, documents, _, queries, _ = real_collections(args.cache_dir, 25)
    vectors = proxy_vectors(documents, args.synthetic)
    order = torch.randperm(len(vectors), generator=torch.Generator().manual_seed(9))
    train, test = vectors[order[args.test :]], vectors[order[: args.test]]
    query_tokens = torch.cat(queries).float()
    print(f"{len(vectors)} vectors ({len(train)} to train on, {len(test)} held out); faiss {faiss.__version__}")
    for count in [int(c) for c in args.centroids.split(",")]:
        ours, ours_s = timed(train_centroids, train, count)
        theirs, theirs_s = timed(faiss_centroids, train, count)
        print(f"{count} centroids: training s (held-out coverage)")
        print(f"  latepool train_centroids  {ours_s:7.1f} s  ({coverage(test, ours):.4f})")
        print(f"  faiss                     {theirs_s:7.1f} s  ({coverage(test, theirs):.4f})")
        compare_assignment(test, ours)
        compare_coding(train, test, ours, query_tokens)


if __name__ == "__main__":
    main()
