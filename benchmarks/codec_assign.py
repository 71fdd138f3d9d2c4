"""Grouped centroid assignment against scoring every centroid: agreement and speed, on real vectors.

The real pooled vectors of the scale proxy (SciFact, NFCorpus and MEDLINE test corpora, MiniLM
ColBERT, k-means PF4; see ``search_scale.py``) train a codec with ``--centroids`` centroids; then
every vector is assigned both ways, in the same process.

    python benchmarks/codec_assign.py --centroids 8192
"""

from __future__ import annotations

import argparse
import time

import torch

from latepool.cache import DEFAULT_CACHE_DIR
from latepool.index.codec import CentroidGroups, assign, train_centroids
from search_scale import real_collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--centroids", type=int, default=8192, help="Centroids of the codec.")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="Embedding cache.")
    args = parser.parse_args()
    _, documents, *_ = real_collections(args.cache_dir, 0)
    vectors = torch.cat(documents).float()
    started = time.perf_counter()
    centroids = train_centroids(vectors, args.centroids)
    print(f"{len(vectors)} vectors, {args.centroids} centroids trained in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    groups = CentroidGroups.of(centroids)
    grouped_s = time.perf_counter() - started
    started = time.perf_counter()
    exact = assign(vectors, centroids)
    exact_s = time.perf_counter() - started
    started = time.perf_counter()
    grouped = groups.assign(vectors)
    grouped_s += time.perf_counter() - started
    scores = vectors @ centroids.T
    best, chosen = scores.gather(1, exact[:, None]), scores.gather(1, grouped[:, None])
    compared = groups.probes * args.centroids / len(groups.members)
    print(f"{len(groups.members)} groups, {groups.probes} probed: about {compared:.0f} centroids compared per vector")
    print(f"exact assignment   {exact_s:.1f} s ({exact_s / len(vectors) * 1e6:.2f} us/vector)")
    print(f"grouped assignment {grouped_s:.1f} s ({grouped_s / len(vectors) * 1e6:.2f} us/vector, grouping included)")
    print(f"speed-up {exact_s / grouped_s:.1f}x; same centroid for {(exact == grouped).float().mean():.4f} of vectors")
    print(f"score lost where they differ: mean {(best - chosen)[exact != grouped].mean():.4f}")


if __name__ == "__main__":
    main()
