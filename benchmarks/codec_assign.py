"""Grouped centroid assignment against scoring every centroid: agreement and speed, on real vectors.

The real pooled vectors of the scale proxy (SciFact, NFCorpus and MEDLINE test corpora, MiniLM
ColBERT, k-means PF4; see ``search_scale.py``), plus ``--synthetic`` synthetic documents mixed from
them, train a codec with ``--centroids`` centroids; then ``--test`` held-out vectors (default: all
vectors) are assigned both ways, in the same process.

    python benchmarks/codec_assign.py --centroids 8192
    python benchmarks/codec_assign.py --centroids 65536 --synthetic 40000 --test 50000
"""

from __future__ import annotations

import argparse
import time

import torch

from latepool.index.codec import CentroidGroups, assign, train_centroids
from latepool.options import DEFAULT_CACHE_DIR
from search_scale import proxy_vectors, real_collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--centroids", type=int, default=8192, help="Centroids of the codec.")
    parser.add_argument("--synthetic", type=int, default=0, help="Synthetic documents added to the real ones.")
    parser.add_argument("--test", type=int, default=0, help="Vectors assigned both ways (default: all).")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="Embedding cache.")
    args = parser.parse_args()
    _, documents, *_ = real_collections(args.cache_dir, 0)
    vectors = proxy_vectors(documents, args.synthetic)
    started = time.perf_counter()
    centroids = train_centroids(vectors, args.centroids)
    print(f"{len(vectors)} vectors, {args.centroids} centroids trained in {time.perf_counter() - started:.1f} s")
    if args.test:
        vectors = vectors[torch.randperm(len(vectors), generator=torch.Generator().manual_seed(9))[: args.test]]
    started = time.perf_counter()
    groups = CentroidGroups.of(centroids)
    grouping_s = time.perf_counter() - started
    started = time.perf_counter()
    exact = assign(vectors, centroids)
    exact_s = time.perf_counter() - started
    started = time.perf_counter()
    grouped = groups.assign(vectors)
    grouped_s = time.perf_counter() - started
    best = (vectors * centroids[exact]).sum(dim=1)
    chosen = (vectors * centroids[grouped]).sum(dim=1)
    compared = groups.probes * args.centroids / max(len(groups.members), 1)
    print(f"{len(groups.members)} groups, {groups.probes} probed: about {compared:.0f} centroids compared per vector")
    rows = len(vectors)
    print(f"exact assignment   {exact_s:.1f} s ({exact_s / rows * 1e6:.2f} us/vector) of {rows} vectors")
    print(f"grouped assignment {grouped_s:.1f} s ({grouped_s / rows * 1e6:.2f} us/vector), grouping {grouping_s:.1f} s")
    same = (exact == grouped).float().mean()
    print(f"speed-up {exact_s / (grouped_s + grouping_s):.1f}x grouping included; same centroid for {same:.4f}")
    print(f"score lost where they differ: mean {(best - chosen)[exact != grouped].mean():.4f}")


if __name__ == "__main__":
    main()
