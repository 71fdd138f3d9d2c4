"""Candidate generation inside Qdrant Edge, three designs side by side, against exact MaxSim.

On the scale proxy of ``search_scale.py`` (real pooled SciFact / NFCorpus / MEDLINE documents, then
synthetic documents mixed from them: many near-duplicates), 100 real queries, recall@10 against
exact MaxSim over the exported float32 vectors. Each design runs in its own process (export
seconds, documents/s, bytes on disk per document, peak RSS, then single-query latency and recall):

- ``muvera``: latepool's export (:func:`latepool.index.qdrant.export_edge`): a MUVERA encoding
  under HNSW prefetches, Qdrant rescores by exact MaxSim. Also the cost of exporting again
  unchanged (the idempotent check alone).
- ``codes``: one point per document with a sparse vector of its vectors' k-means centroid ids (an
  inverted index, no graph); the query's sparse vector holds each token's ``probes`` nearest
  centroids, weighted by similarity; the best ``limit`` are rescored by exact MaxSim.
- ``tokens``: one point per pooled vector (its centroid id as a one-hot sparse vector, the vector
  itself, the document in the payload). Each query token reads its ``probes`` centroids' lists and
  rescores them by its own similarity; documents are ranked by the sum over tokens of their best
  vector (the token's ``k'``-th similarity where missing), and the best ``rescore`` get exact MaxSim.

    python benchmarks/qdrant_designs.py --size 20000 --cache-dir ~/.cache/latepool/scale
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from latepool.options import DEFAULT_CACHE_DIR  # noqa: E402
from latepool.scoring import maxsim_topk  # noqa: E402
from search_scale import corpus, directory_bytes, peak_rss_bytes, real_collections  # noqa: E402

DESIGNS = ("muvera", "codes", "tokens")
SETTINGS = {  # per design: the search settings measured
    "muvera": [{"prefetch": 100}, {"prefetch": 1000}],
    "codes": [{"probes": 16, "limit": 1000}, {"probes": 16, "limit": 2000}],
    "tokens": [{"probes": 4, "kprime": 100, "rescore": 256}, {"probes": 8, "kprime": 100, "rescore": 256}],
}


def index_centroids(documents: list[torch.Tensor]) -> torch.Tensor:
    """The k-means centroids an index of these documents would have (latepool's codec)."""
    from latepool.index.codec import POINTS_PER_CENTROID, Codec, default_num_centroids

    vectors = torch.cat(documents)
    count = default_num_centroids(len(vectors))
    sample = vectors[torch.randperm(len(vectors), generator=torch.Generator().manual_seed(0))]
    return Codec.train(sample[: POINTS_PER_CENTROID * count].clone(), count, consume=True).centroids


def export_muvera(documents, path: Path) -> dict:
    from latepool.index.qdrant import export_edge

    ids = [str(i) for i in range(len(documents))]
    batches = [(ids[a : a + 1000], documents[a : a + 1000]) for a in range(0, len(documents), 1000)]
    started = time.perf_counter()
    export_edge(iter(batches), path, dim=int(documents[0].shape[1])).close()
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    shard = export_edge(iter(batches), path, dim=int(documents[0].shape[1]))
    return {"shard": shard, "export_s": seconds, "again_s": time.perf_counter() - started}


def search_muvera(shard, query, prefetch: int) -> list[int]:
    from latepool.index.qdrant import search_edge

    return [int(hit.id) for hit in search_edge(shard, [query], 10, prefetch=prefetch)[0]]


def _shard(path: Path, dim: int, dense: bool):
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeShard,
        EdgeSparseVectorParams,
        EdgeVectorParams,
        HnswIndexConfig,
        MultiVectorComparator,
        MultiVectorConfig,
    )

    no_graph = HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000)
    vectors = {
        "colbert": EdgeVectorParams(
            size=dim,
            distance=Distance.Dot,
            multivector_config=MultiVectorConfig(MultiVectorComparator.MaxSim),
            hnsw_config=no_graph,
        )
    }
    if dense:
        vectors["vector"] = EdgeVectorParams(size=dim, distance=Distance.Dot, hnsw_config=no_graph)
    return EdgeShard.create(str(path), EdgeConfig(vectors=vectors, sparse_vectors={"codes": EdgeSparseVectorParams()}))


def export_codes(documents, path: Path, centroids: torch.Tensor) -> dict:
    from qdrant_edge import Point, SparseVector, UpdateOperation

    from latepool.index.codec import Codec

    codec = Codec(centroids)
    started = time.perf_counter()
    shard = _shard(path, int(documents[0].shape[1]), dense=False)
    for start in range(0, len(documents), 1000):
        batch = documents[start : start + 1000]
        codes = torch.from_numpy(codec.assign(torch.cat(batch)).astype("int64")).split([len(d) for d in batch])
        points = []
        for number, (document, cells) in enumerate(zip(batch, codes), start=start):
            unique = torch.unique(cells).tolist()
            points.append(
                Point(number, {"colbert": document.tolist(), "codes": SparseVector(unique, [1.0] * len(unique))})
            )
        shard.update(UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()
    return {"shard": shard, "export_s": time.perf_counter() - started}


def search_codes(shard, query, centroids: torch.Tensor, probes: int, limit: int) -> list[int]:
    from qdrant_edge import Prefetch, Query, QueryRequest, SparseVector

    nearest = (query.float() @ centroids.T).topk(probes, dim=1)
    weights = torch.zeros(len(centroids)).index_add_(0, nearest.indices.flatten(), nearest.values.flatten())
    cells = torch.nonzero(weights).flatten()
    sparse = SparseVector(cells.tolist(), weights[cells].tolist())
    request = QueryRequest(
        limit=10,
        query=Query.Nearest(query.float().tolist(), using="colbert"),
        prefetches=[Prefetch(limit=limit, query=Query.Nearest(sparse, using="codes"))],
    )
    return [int(point.id) for point in shard.query(request)]


def export_tokens(documents, path: Path, centroids: torch.Tensor) -> dict:
    from qdrant_edge import Point, SparseVector, UpdateOperation

    from latepool.index.codec import Codec

    codec = Codec(centroids)
    started = time.perf_counter()
    shard = _shard(path, int(documents[0].shape[1]), dense=True)
    row = len(documents)  # token points are numbered after the document points
    for start in range(0, len(documents), 200):
        batch = documents[start : start + 200]
        codes = codec.assign(torch.cat(batch)).tolist()
        points, offset = [], 0
        for number, document in enumerate(batch, start=start):
            values = document.tolist()
            points.append(Point(number, {"colbert": values}))
            for vector in values:
                points.append(
                    Point(row, {"vector": vector, "codes": SparseVector([codes[offset]], [1.0])}, {"d": number})
                )
                row, offset = row + 1, offset + 1
        shard.update(UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()
    return {"shard": shard, "export_s": time.perf_counter() - started}


def search_tokens(shard, query, centroids: torch.Tensor, probes: int, kprime: int, rescore: int) -> list[int]:
    from qdrant_edge import Filter, HasIdCondition, Prefetch, Query, QueryBatchRequest, QueryRequest, SparseVector

    nearest = (query.float() @ centroids.T).topk(probes, dim=1)
    requests = [
        QueryRequest(
            limit=kprime,
            query=Query.Nearest(token.float().tolist(), using="vector"),
            prefetches=[
                Prefetch(
                    limit=20 * kprime,
                    query=Query.Nearest(SparseVector(cells.tolist(), scores.tolist()), using="codes"),
                )
            ],
            with_payload=True,
        )
        for token, cells, scores in zip(query, nearest.indices, nearest.values)
    ]
    floors, best = [], {}
    for token, hits in enumerate(shard.query_batch(QueryBatchRequest(requests))):
        floors.append(hits[-1].score if len(hits) == kprime else 0.0)
        for hit in hits:  # best first: the first hit of a document is its best vector for this token
            best.setdefault(hit.payload["d"], {}).setdefault(token, hit.score)
    gain = {d: sum(score - floors[t] for t, score in found.items()) for d, found in best.items()}
    chosen = sorted(gain, key=gain.get, reverse=True)[:rescore]
    request = QueryRequest(
        limit=10,
        query=Query.Nearest(query.float().tolist(), using="colbert"),
        filter=Filter(must=[HasIdCondition(set(chosen))]),
    )
    return [int(point.id) for point in shard.query(request)]


def run_design(design: str, data_file: Path, shard_dir: Path) -> dict:
    """Runs in a fresh process: export, then every setting of :data:`SETTINGS` over the queries."""
    data = torch.load(data_file)
    documents, queries, truth, centroids = data["documents"], data["queries"], data["truth"], data["centroids"]
    if design == "muvera":
        exported = export_muvera(documents, shard_dir)
        search = lambda shard, query, s: search_muvera(shard, query, **s)  # noqa: E731
    elif design == "codes":
        exported = export_codes(documents, shard_dir, centroids)
        search = lambda shard, query, s: search_codes(shard, query, centroids, **s)  # noqa: E731
    else:
        exported = export_tokens(documents, shard_dir, centroids)
        search = lambda shard, query, s: search_tokens(shard, query, centroids, **s)  # noqa: E731
    shard = exported.pop("shard")
    rows = []
    for settings in SETTINGS[design]:
        latencies, found = [], 0
        for query, expected in zip(queries, truth):
            started = time.perf_counter()
            got = search(shard, query, settings)
            latencies.append((time.perf_counter() - started) * 1000)
            found += len(set(got) & set(expected))
        rows.append(
            {"settings": settings, "recall": found / (10 * len(queries)), "median_ms": statistics.median(latencies)}
        )
    shard.close()
    size = len(documents)
    return {
        **exported,
        "documents_per_s": size / exported["export_s"],
        "bytes_per_document": directory_bytes(shard_dir) / size,
        "peak_rss_bytes": peak_rss_bytes(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000, help="Documents of the proxy.")
    parser.add_argument("--designs", default=",".join(DESIGNS), help="Comma-separated designs to measure.")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="Embedding cache.")
    parser.add_argument("--root", type=Path, default=None, help="Where the shards are written (default: a temp dir).")
    parser.add_argument("--design", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.design:
        print(json.dumps(run_design(args.design[0], Path(args.design[1]), Path(args.design[2]))))
        return
    with tempfile.TemporaryDirectory(dir=args.root) as temporary:
        root = Path(temporary)
        ids, documents, _, queries, _ = real_collections(args.cache_dir, 50)
        documents = [d.float() for _, batch in corpus(args.size, (ids, documents)) for d in batch]
        started = time.perf_counter()
        truth = maxsim_topk(queries, documents, 10)[1].tolist()
        print(
            f"{len(documents):,} documents, {sum(len(d) for d in documents):,} vectors, {len(queries)} queries; "
            f"exact top 10 in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        centroids = index_centroids(documents)
        data_file = root / "data.pt"
        torch.save({"documents": documents, "queries": queries, "truth": truth, "centroids": centroids}, data_file)
        del documents
        print(
            f"{'design':<8} {'export':>8} {'docs/s':>7} {'KB/doc':>7} {'peak RSS':>9}  settings: recall@10, median ms"
        )
        for design in args.designs.split(","):
            shard_dir = root / f"shard-{design}"
            command = [sys.executable, __file__, "--design", design, str(data_file), str(shard_dir)]
            result = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            shutil.rmtree(shard_dir, ignore_errors=True)
            again = f" (again unchanged: {result['again_s']:.1f} s)" if "again_s" in result else ""
            rows = "; ".join(f"{r['settings']}: {r['recall']:.3f}, {r['median_ms']:.1f} ms" for r in result["rows"])
            print(
                f"{design:<8} {result['export_s']:>7.0f}s {result['documents_per_s']:>7,.0f} "
                f"{result['bytes_per_document'] / 1024:>7.1f} {result['peak_rss_bytes'] / 1e6:>7,.0f}MB  {rows}{again}",
                flush=True,
            )


if __name__ == "__main__":
    main()
