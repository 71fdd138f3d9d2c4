"""Candidate generation inside Qdrant Edge, designs side by side, against exact MaxSim.

On a proxy of ``search_scale.py`` (``--proxy standard``: real pooled SciFact / NFCorpus / MEDLINE
documents, then synthetic documents mixed from them; ``--proxy copies``: each real document followed
by 10-50 perturbed copies), 100 real queries, recall@10 against exact MaxSim over the exported
float32 vectors. Each design runs in its own process (export seconds, documents/s, bytes on disk per
document, peak RSS, then single-query latency and recall per setting):

- ``graph``: latepool's export (:func:`latepool.index.qdrant.export_edge`, the default): one point
  per pooled vector under HNSW beside each document's multivector. Each query token takes its
  ``token_hits`` nearest vectors, documents are ranked by the sum of their best vectors' margins
  over each token's last hit, and the best ``prefetch`` are rescored by exact MaxSim. Also the cost
  of exporting again unchanged (the idempotent check alone), and the candidate stage alone against
  exact search (:func:`graph_reach`: how much of the top 10 the graph's hits can reach at all).
- ``muvera``: the document's MUVERA encoding (:mod:`latepool.index.fde`) under HNSW prefetches
  ``prefetch`` documents, Qdrant rescores them by exact MaxSim (latepool's previous default).
- ``codes``: one point per document with a sparse vector of its vectors' k-means centroid ids (an
  inverted index, no graph); the query's sparse vector holds each token's ``probes`` nearest
  centroids, weighted by similarity; the best ``limit`` are rescored by exact MaxSim.
- ``latepool``: latepool's own index of the same float32 documents (``float16`` storage), its
  default search, for comparison.

    python benchmarks/qdrant_designs.py --size 100000 --proxy copies --cache-dir ~/.cache/latepool/scale
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
from search_scale import (  # noqa: E402
    PROXIES,
    SETTINGS,
    directory_bytes,
    peak_rss_bytes,
    proxy_corpus,
    real_collections,
)

DESIGNS = ("graph", "muvera", "codes", "latepool")
SEARCHES = {  # per design: the search settings measured (the first is the default where there is one)
    "graph": [
        {"prefetch": 800, "token_hits": 100},
        {"prefetch": 400, "token_hits": 100},
        {"prefetch": 600, "token_hits": 150},
        {"prefetch": 1200, "token_hits": 100},
        {"prefetch": 1200, "token_hits": 400},
    ],
    "muvera": [{"prefetch": 100}, {"prefetch": 1000}],
    "codes": [{"probes": 16, "limit": 1000}, {"probes": 16, "limit": 2000}],
    "latepool": [{}],
}
REACH_TOKEN_HITS = (100, 200, 400)  # graph_reach: the candidate stage alone at these token_hits


def index_centroids(documents: list[torch.Tensor]) -> torch.Tensor:
    """The k-means centroids an index of these documents would have (latepool's codec)."""
    from latepool.index.codec import POINTS_PER_CENTROID, Codec, default_num_centroids

    vectors = torch.cat(documents)
    count = default_num_centroids(len(vectors))
    sample = vectors[torch.randperm(len(vectors), generator=torch.Generator().manual_seed(0))]
    return Codec.train(sample[: POINTS_PER_CENTROID * count].clone(), count, consume=True).centroids


def batches_of(documents, size: int = 1000):
    ids = [str(i) for i in range(len(documents))]
    return [(ids[a : a + size], documents[a : a + size]) for a in range(0, len(documents), size)]


def export_graph(documents, path: Path) -> dict:
    """Export (or, for a shard an earlier ``--keep`` run left, read its export time), then export again."""
    from latepool.index.qdrant import export_edge

    dim, record = int(documents[0].shape[1]), path.with_suffix(".json")
    if not record.is_file():
        shutil.rmtree(path, ignore_errors=True)
        started = time.perf_counter()
        export_edge(iter(batches_of(documents)), path, dim=dim).close()
        record.write_text(json.dumps({"export_s": time.perf_counter() - started}))
    seconds = json.loads(record.read_text())["export_s"]
    started = time.perf_counter()
    shard = export_edge(iter(batches_of(documents)), path, dim=dim)
    return {"shard": shard, "export_s": seconds, "again_s": time.perf_counter() - started}


def search_graph(shard, query, prefetch: int, token_hits: int) -> list[int]:
    from latepool.index.qdrant import search_edge

    return [int(hit.id) for hit in search_edge(shard, [query], 10, prefetch=prefetch, token_hits=token_hits)[0]]


def graph_reach(shard, documents, queries, truth, rescored: int = 800) -> dict:
    """Why the graph design finds what it finds: the candidate stage alone, against exact search.

    Per ``token_hits`` of :data:`REACH_TOKEN_HITS`: the share of each query's exact top 10 among all
    the documents its tokens' hits name (what no prefetch could raise) and among the best
    ``rescored``, and the candidate stage's median ms. Then :func:`token_recall`.
    """
    from latepool.index.qdrant import EdgeCollection, point_id

    keys = [point_id(str(number)) for number in range(len(documents))]
    rows, scale = [], 10 * len(queries)
    for token_hits in REACH_TOKEN_HITS:
        collection, reach, best, latencies = EdgeCollection(shard, token_hits=token_hits), 0, 0, []
        for query, expected in zip(queries, truth):
            started = time.perf_counter()
            found = collection.candidates(query, len(documents))
            latencies.append((time.perf_counter() - started) * 1000)
            wanted = {keys[number] for number in expected}
            reach, best = reach + len(wanted & set(found)), best + len(wanted & set(found[:rescored]))
        rows.append(
            {"token_hits": token_hits, "reach": reach / scale, "best": best / scale, "ms": statistics.median(latencies)}
        )
    return {"rows": rows, "token_recall": token_recall(shard, documents, queries, keys)}


def token_recall(shard, documents, queries, keys: list[str], count: int = 100) -> float:
    """Per query token the search asks the graph for (the representatives), the share of the documents
    of its exact ``count`` nearest vectors among the documents of its ``count`` graph hits, averaged."""
    from latepool.index.qdrant import TOKEN_MERGE_SIMILARITY, EdgeCollection
    from latepool.index.search import merge_tokens

    vectors = torch.cat(documents).float()
    owner = torch.repeat_interleave(torch.arange(len(documents)), torch.tensor([len(d) for d in documents]))
    collection, shares = EdgeCollection(shard, token_hits=count), []
    for query in queries:
        tokens = query[merge_tokens(query, TOKEN_MERGE_SIMILARITY)[0]].float()
        for token, rows in zip(tokens, nearest_vectors(tokens, vectors, count)):
            exact = {keys[number] for number in owner[rows].tolist()}
            shares.append(len(exact & set(collection.candidates(token[None], count))) / len(exact))
    return statistics.mean(shares)


def nearest_vectors(tokens: torch.Tensor, vectors: torch.Tensor, count: int, chunk: int = 1_000_000) -> torch.Tensor:
    """Rows of the ``count`` vectors with the largest dot product per token, a chunk of vectors at a time."""
    scores, rows = [], []
    for start in range(0, len(vectors), chunk):
        top = (tokens @ vectors[start : start + chunk].T).topk(count, dim=1)
        scores.append(top.values)
        rows.append(top.indices + start)
    return torch.cat(rows, 1).gather(1, torch.cat(scores, 1).topk(count, dim=1).indices)


def export_muvera(documents, path: Path) -> dict:
    from qdrant_edge import Point, UpdateOperation

    from latepool.index.fde import FDEConfig, encode_documents

    config = FDEConfig(dim=int(documents[0].shape[1]))
    started = time.perf_counter()
    shard = _shard(path, int(documents[0].shape[1]), single=config.size)
    for start in range(0, len(documents), 1000):
        batch = documents[start : start + 1000]
        encodings = encode_documents(batch, config).tolist()
        points = [
            Point(number, {"colbert": document.tolist(), "fde": encoding})
            for number, (document, encoding) in enumerate(zip(batch, encodings), start=start)
        ]
        shard.update(UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()
    return {"shard": shard, "export_s": time.perf_counter() - started}


def search_muvera(shard, query, prefetch: int) -> list[int]:
    from qdrant_edge import Prefetch, Query, QueryRequest

    from latepool.index.fde import FDEConfig, encode_queries

    encoding = encode_queries([query], FDEConfig(dim=int(query.shape[1])))[0].tolist()
    request = QueryRequest(
        limit=10,
        query=Query.Nearest(query.float().tolist(), using="colbert"),
        prefetches=[Prefetch(limit=prefetch, query=Query.Nearest(encoding, using="fde"))],
    )
    return [int(point.id) for point in shard.query(request)]


def export_latepool(documents, path: Path) -> dict:
    from latepool.index import Index

    started = time.perf_counter()
    batches = iter(batches_of(documents, 10_000))
    index = Index.from_batches(path, batches, {**SETTINGS, "dtype": "float16"}, expected_documents=len(documents))
    return {"shard": index, "export_s": time.perf_counter() - started}


def search_latepool(index, query) -> list[int]:
    return [int(hit.id) for hit in index.search_embeddings([query], 10)[0]]


def _shard(path: Path, dim: int, single: int = 0):
    """A shard of ``colbert`` multivectors (no graph), a sparse ``codes`` vector and, with ``single``,
    a dense ``fde`` vector of that size under HNSW."""
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
    if single:
        vectors["fde"] = EdgeVectorParams(size=single, distance=Distance.Dot)
    return EdgeShard.create(str(path), EdgeConfig(vectors=vectors, sparse_vectors={"codes": EdgeSparseVectorParams()}))


def export_codes(documents, path: Path, centroids: torch.Tensor) -> dict:
    from qdrant_edge import Point, SparseVector, UpdateOperation

    from latepool.index.codec import Codec

    codec = Codec(centroids)
    started = time.perf_counter()
    shard = _shard(path, int(documents[0].shape[1]))
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


def run_design(design: str, data_file: Path, shard_dir: Path) -> dict:
    """Runs in a fresh process: export, then every setting of :data:`SEARCHES` over the queries."""
    data = torch.load(data_file)
    documents, queries, truth, centroids = data["documents"], data["queries"], data["truth"], data["centroids"]
    if design == "graph":
        exported = export_graph(documents, shard_dir)
        search = lambda shard, query, s: search_graph(shard, query, **s)  # noqa: E731
    elif design == "muvera":
        exported = export_muvera(documents, shard_dir)
        search = lambda shard, query, s: search_muvera(shard, query, **s)  # noqa: E731
    elif design == "codes":
        exported = export_codes(documents, shard_dir, centroids)
        search = lambda shard, query, s: search_codes(shard, query, centroids, **s)  # noqa: E731
    else:
        exported = export_latepool(documents, shard_dir)
        search = lambda index, query, s: search_latepool(index, query)  # noqa: E731
    shard = exported.pop("shard")
    for query in queries[:20]:  # the first searches fault the shard's files in: not timed
        search(shard, query, SEARCHES[design][0])
    rows = []
    for settings in SEARCHES[design]:
        latencies, found = [], 0
        for query, expected in zip(queries, truth):
            started = time.perf_counter()
            got = search(shard, query, settings)
            latencies.append((time.perf_counter() - started) * 1000)
            found += len(set(got) & set(expected))
        rows.append(
            {"settings": settings, "recall": found / (10 * len(queries)), "median_ms": statistics.median(latencies)}
        )
    size, peak = len(documents), peak_rss_bytes()  # before graph_reach's exact nearest vectors
    reach = graph_reach(shard, documents, queries, truth) if design == "graph" else None
    if hasattr(shard, "close"):
        shard.close()
    return {
        **exported,
        "documents_per_s": size / exported["export_s"],
        "bytes_per_document": directory_bytes(shard_dir) / size,
        "peak_rss_bytes": peak,
        "rows": rows,
        "reach": reach,
    }


def write_data(data_file: Path, args: argparse.Namespace) -> None:
    """The proxy's documents, the queries, their exact top 10 and (for ``codes``) centroids, in one file."""
    ids, documents, _, queries, _, _ = real_collections(args.cache_dir, 50)
    batches = proxy_corpus(args.proxy, args.size, (ids, documents, []))
    documents = [d.float() for _, batch in batches for d in batch]
    started = time.perf_counter()
    truth = maxsim_topk(queries, documents, 10)[1].tolist()
    print(
        f"{len(documents):,} documents, {sum(len(d) for d in documents):,} vectors, {len(queries)} queries; "
        f"exact top 10 in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    centroids = index_centroids(documents) if "codes" in args.designs else None
    torch.save({"documents": documents, "queries": queries, "truth": truth, "centroids": centroids}, data_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000, help="Documents of the proxy.")
    parser.add_argument("--proxy", default="standard", choices=[p for p in PROXIES if p != "chunks"])
    parser.add_argument("--designs", default=",".join(DESIGNS), help="Comma-separated designs to measure.")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="Embedding cache.")
    parser.add_argument("--root", type=Path, default=None, help="Where the shards are written (default: a temp dir).")
    parser.add_argument(
        "--keep", type=Path, default=None, help="Keep the proxy's data and the graph shard here, and reuse them."
    )
    parser.add_argument("--design", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.design:
        print(json.dumps(run_design(args.design[0], Path(args.design[1]), Path(args.design[2]))))
        return
    with tempfile.TemporaryDirectory(dir=args.root) as temporary:
        root = args.keep or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        data_file = root / f"data-{args.proxy}-{args.size}.pt"
        if not data_file.is_file():
            write_data(data_file, args)
        print(
            f"{'design':<8} {'export':>8} {'docs/s':>7} {'KB/doc':>7} {'peak RSS':>9}  settings: recall@10, median ms"
        )
        for design in args.designs.split(","):
            shard_dir = root / f"shard-{design}-{args.proxy}-{args.size}"
            command = [sys.executable, __file__, "--design", design, str(data_file), str(shard_dir)]
            result = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            if not (args.keep and design == "graph"):
                shutil.rmtree(shard_dir, ignore_errors=True)
            again = f" (again unchanged: {result['again_s']:.1f} s)" if "again_s" in result else ""
            rows = "; ".join(f"{r['settings']}: {r['recall']:.3f}, {r['median_ms']:.1f} ms" for r in result["rows"])
            print(
                f"{design:<8} {result['export_s']:>7.0f}s {result['documents_per_s']:>7,.0f} "
                f"{result['bytes_per_document'] / 1024:>7.1f} {result['peak_rss_bytes'] / 1e6:>7,.0f}MB  {rows}{again}",
                flush=True,
            )
            if result["reach"]:
                reach = "; ".join(
                    f"token_hits {r['token_hits']}: {r['reach']:.3f} / {r['best']:.3f} in {r['ms']:.1f} ms"
                    for r in result["reach"]["rows"]
                )
                print(
                    f"{'':<8} candidate stage, exact top 10 among all candidates / the best 800: {reach}; "
                    f"a query token's 100 graph hits hold {result['reach']['token_recall']:.3f} of the documents "
                    "of its exact 100 nearest vectors",
                    flush=True,
                )


if __name__ == "__main__":
    main()
