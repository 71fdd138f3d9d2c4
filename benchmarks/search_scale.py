"""The pooled index at scale: build, size, open, memory, latency, recall and NDCG at 10k-1M documents.

A scale proxy built from real pooled vectors: the SciFact, NFCorpus and MEDLINE test corpora
(../shared/data) are encoded with the MiniLM ColBERT (cached) and pooled with k-means PF4; they stay
in the index with their ids, so their qrels still judge the results. Synthetic documents fill the
index up to each size: each mixes the token vectors of three random real documents (as many as a
random real document has), jittered by Gaussian noise and rescaled to the original vectors' norms,
so they keep the real vectors' geometry and norms.

Per size: build seconds, bytes on disk (and per pooled vector), then in a fresh process: open
seconds, median / p95 ms per single query and ms per query batched (default search), peak RSS (after
the default searches, and again after the recall-latency curve's settings),
recall@10 against exact MaxSim over the same stored vectors, NDCG@10 on the real qrels, and the
seconds to add 1,000 more documents. ``--queries`` real queries (half SciFact, half NFCorpus).

Peers, side by side on the same documents (``--peers``, sizes up to ``--peer-limit``): fast-plaid
(4-bit, CPU; installed into its own virtualenv, since it pins torch 2.11) and Qdrant Edge
(latepool's export: the pooled multivectors, each pooled vector under HNSW; its default search).
benchmarks/qdrant_designs.py compares Qdrant designs on their own. For these sizes
recall@10 of every engine is also measured against exact MaxSim over the float32 input vectors.

    python benchmarks/search_scale.py --sizes 10000,100000 --dtype residual2 --peers
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from latepool.data import load_dataset
from latepool.evaluation.metrics import mean_metrics
from latepool.index import Hit, Index
from latepool.options import DEFAULT_CACHE_DIR
from latepool.pooling import pool_corpus
from latepool.scoring import PackedDocuments, maxsim_topk

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLLECTIONS = ("scifact", "nfcorpus", "medline")
SETTINGS = {
    "model": "minilm",
    "model_hash": "",
    "query_length": 48,
    "document_length": 300,
    "pool_method": "kmeans",
    "pool_factor": 4,
}


def real_collections(cache_dir: Path, queries_per_collection: int, blocks: bool = False):
    """Pooled real documents (ids prefixed by collection), query embeddings and qrels; with ``blocks``,
    also each real document's :data:`BLOCK_TOKENS`-token blocks, pooled (see :func:`pooled_blocks`)."""
    # imported here, not at the top: the measuring child process searches only, as a search service
    # would, so its peak RSS holds no model and no sentence-transformers
    from latepool.evaluation.sweep import encode_dataset
    from latepool.models import load_model

    model = load_model("minilm", device="cpu")
    ids, documents, query_ids, queries, qrels, document_blocks = [], [], [], [], {}, []
    for name in COLLECTIONS:
        dataset = load_dataset(DATA / name, split="test")
        encoded, encoded_queries = encode_dataset(model, dataset, cache_dir, model_name="minilm")
        documents += pool_corpus(encoded, "kmeans", 4, show_progress_bar=False)
        document_blocks += pooled_blocks(encoded) if blocks else []
        ids += [f"{name}:{i}" for i in dataset.corpus_ids]
        if name != "medline":
            for query_id, query in list(zip(dataset.query_ids, encoded_queries))[:queries_per_collection]:
                query_ids.append(f"{name}:{query_id}")
                queries.append(query)
                qrels[query_ids[-1]] = {f"{name}:{d}": g for d, g in dataset.qrels[query_id].items()}
    return ids, documents, query_ids, queries, qrels, document_blocks


BLOCK_TOKENS = 32  # a chunk of the chunks proxy is two blocks: 64 tokens, half of them shared with the next


def pooled_blocks(encoded: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Each document's consecutive :data:`BLOCK_TOKENS`-token blocks, each pooled by k-means PF4 on its own
    (the document's first token protected in its first block, as the index pools whole documents)."""
    firsts = [e[:BLOCK_TOKENS] for e in encoded]
    rests = [e[start : start + BLOCK_TOKENS] for e in encoded for start in range(BLOCK_TOKENS, len(e), BLOCK_TOKENS)]
    pooled_firsts = pool_corpus(firsts, "kmeans", 4, show_progress_bar=False)
    pooled_rests = iter(pool_corpus(rests, "kmeans", 4, num_protected_tokens=0, show_progress_bar=False))
    return [
        [first] + [next(pooled_rests) for _ in range(BLOCK_TOKENS, len(e), BLOCK_TOKENS)]
        for first, e in zip(pooled_firsts, encoded)
    ]


def synthetic_batches(real: list[torch.Tensor], count: int, batch: int, seed: int = 0):
    """Batches of synthetic documents mixing the vectors of three random real documents each."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([len(d) for d in real])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    pool = torch.cat(real)
    made = 0
    while made < count:
        size = min(batch, count - made)
        sizes = lengths[torch.randint(0, len(real), (size,), generator=generator)]
        sources = torch.randint(0, len(real), (size, 3), generator=generator)
        row_doc = torch.repeat_interleave(torch.arange(size), sizes)
        source = sources[row_doc, torch.randint(0, 3, (len(row_doc),), generator=generator)]
        rows = offsets[source] + (torch.rand(len(row_doc), generator=generator) * lengths[source]).long()
        noisy = jittered(pool[rows], 0.05, generator)
        yield [f"synthetic:{made + i}" for i in range(size)], list(noisy.split(sizes.tolist()))
        made += size


def jittered(vectors: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``vectors`` plus Gaussian noise of norm about ``noise``, each rescaled to its original norm."""
    noisy = vectors + noise * torch.randn(vectors.shape, generator=generator) / vectors.shape[1] ** 0.5
    return noisy * (vectors.norm(dim=1, keepdim=True) / noisy.norm(dim=1, keepdim=True))


CHUNK_ID = "#chunk"  # a real document's chunk ids: "<document id>#chunk<n>", judged as their document


def chunks(blocks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Overlapping chunks of one document given as pooled blocks: each chunk two consecutive blocks, so it
    shares half its vectors with the next (a one-block document is one chunk)."""
    return [torch.cat(blocks[i : i + 2]) for i in range(max(len(blocks) - 1, 1))]


def batched(documents, size: int, batch: int):
    """The first ``size`` ``(id, vectors)`` pairs of ``documents``, as ``(ids, vectors)`` batches of ``batch``."""
    ids, vectors = [], []
    for document_id, document in itertools.islice(documents, size):
        ids.append(document_id)
        vectors.append(document)
        if len(ids) == batch:
            yield ids, vectors
            ids, vectors = [], []
    if ids:
        yield ids, vectors


def chunk_corpus(size: int, ids: list[str], blocks: list[list[torch.Tensor]], batch: int = 100_000, seed: int = 4):
    """The chunks proxy, in batches: the real documents' chunks first, then those of synthetic documents.

    RAG-style chunking with 50% overlap: every chunk is 64 tokens, pooled as two 32-token blocks, and
    neighbouring chunks share a block. A synthetic document has as many blocks as a random real one,
    taken as runs of consecutive blocks from three random real documents and jittered once per block
    (as the standard proxy's synthetic documents mix three real ones), then chunked the same way.
    """
    generator = torch.Generator().manual_seed(seed)

    def synthetic(count: int) -> list[torch.Tensor]:
        sources = torch.randint(0, len(blocks), (3,), generator=generator).tolist()
        made = []
        for part, source in enumerate(sources):
            start = int(torch.randint(0, len(blocks[source]), (1,), generator=generator))
            for i in range(count // 3 + (part < count % 3)):
                made.append(jittered(blocks[source][(start + i) % len(blocks[source])], 0.05, generator))
        return made

    def documents():
        for document_id, document_blocks in zip(ids, blocks):
            for i, chunk in enumerate(chunks(document_blocks)):
                yield f"{document_id}{CHUNK_ID}{i}", chunk
        for number in itertools.count():
            count = len(blocks[int(torch.randint(0, len(blocks), (1,), generator=generator))])
            for i, chunk in enumerate(chunks(synthetic(count))):
                yield f"synthetic:{number}{CHUNK_ID}{i}", chunk

    yield from batched(documents(), size, batch)


def copies_corpus(size: int, ids: list[str], real: list[torch.Tensor], batch: int = 100_000, seed: int = 6):
    """The copies proxy, in batches: the real documents, then 10-50 perturbed copies of each real document
    in turn, then synthetic documents (the standard proxy's) each followed by its copies, until ``size``.

    A copy, like a mirrored or edited version of a page: 0-10% of its vectors dropped, 0-10% replaced by
    vectors of other real documents, and every vector jittered by noise of norm 0.02-0.1.
    """
    generator = torch.Generator().manual_seed(seed)
    everything = torch.cat(real)

    def with_copies(document_id: str, document: torch.Tensor):
        """10-50 copies of one document, drawn together: ``(copies, n)`` masks and noise at once."""
        count, (n, dim) = int(torch.randint(10, 51, (1,), generator=generator)), document.shape
        drop, replace, noise = (
            torch.rand(3, count, 1, generator=generator) * torch.tensor([0.1, 0.1, 0.08])[:, None, None]
        )
        kept = torch.rand(count, n, generator=generator) >= drop
        kept[:, 0] |= ~kept.any(dim=1)  # a copy keeps at least one vector
        swapped = torch.rand(count, n, generator=generator) < replace
        others = everything[torch.randint(0, len(everything), (count, n), generator=generator)]
        vectors = torch.where(swapped[..., None], others, document.expand(count, n, dim))
        jitter = (0.02 + noise[..., None]) * torch.randn(count, n, dim, generator=generator) / dim**0.5
        noisy = vectors + jitter
        noisy = noisy * (vectors.norm(dim=2, keepdim=True) / noisy.norm(dim=2, keepdim=True))
        noisy, kept = noisy.numpy(), kept.numpy()  # NumPy's boolean indexing is much faster on small arrays
        for i in range(count):
            yield f"copy{i}:{document_id}", torch.from_numpy(noisy[i][kept[i]])

    def documents():
        yield from zip(ids, real)
        for document_id, document in zip(ids, real):
            yield from with_copies(document_id, document)
        for batch_ids, batch_documents in synthetic_batches(real, size, 10_000, seed=7):
            for document_id, document in zip(batch_ids, batch_documents):
                yield document_id, document
                yield from with_copies(document_id, document)

    yield from batched(documents(), size, batch)


def proxy_vectors(real: list[torch.Tensor], synthetic: int) -> torch.Tensor:
    """The vectors of the real documents and of ``synthetic`` synthetic ones mixed from them, float32."""
    mixed = next(synthetic_batches(real, synthetic, synthetic, seed=5))[1] if synthetic else []
    return torch.cat(real + mixed).float()


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it starts afresh at exec, not at the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


PROXIES = ("standard", "chunks", "copies")


def proxy_corpus(proxy: str, size: int, real, batch: int = 100_000):
    """The first ``size`` documents of a proxy, in batches; ``real`` is ``(ids, documents, blocks)``."""
    ids, documents, blocks = real
    if proxy == "chunks":
        return chunk_corpus(size, ids, blocks, batch)
    if proxy == "copies":
        return copies_corpus(size, ids, documents, batch)
    return corpus(size, (ids, documents), batch)


def corpus(size: int, real, batch: int = 100_000):
    """The first ``size`` documents of the standard proxy, in batches: the real ones first, then synthetic ones."""
    ids, documents = real
    first = min(size, batch) - len(ids)
    extra_ids, extra_docs = next(synthetic_batches(documents, first, first, seed=1)) if first > 0 else ([], [])
    yield (ids + extra_ids)[:size], (documents + extra_docs)[:size]
    remaining = size - max(min(size, batch), len(ids))
    for number, (batch_ids, batch_docs) in enumerate(synthetic_batches(documents, remaining, batch, seed=2)):
        yield [f"{i}-{number}" for i in batch_ids], batch_docs


def build(path: Path, proxy: str, size: int, dtype: str, real) -> dict:
    """Stream the proxy into a new index (batches of 10,000 documents: memory holds one batch, not the corpus)."""
    started = time.perf_counter()
    settings = {**SETTINGS, "dtype": dtype}
    batches = proxy_corpus(proxy, size, real, batch=10_000)
    index = Index.from_batches(path, batches, settings, expected_documents=size)
    seconds = time.perf_counter() - started
    on_disk = directory_bytes(path)
    return {
        "documents": len(index),
        "vectors": index.manifest["vector_count"],
        "centroids": len(index.codec.centroids),
        "build_s": seconds,
        "bytes": on_disk,
        "bytes_per_vector": on_disk / index.manifest["vector_count"],
    }


def proxy_name(proxy: str, size: int, dtype: str) -> str:
    """The file-name stem of a proxy's index and records (the standard proxy's as before there were others)."""
    return f"{size}-{dtype}" if proxy == "standard" else f"{proxy}-{size}-{dtype}"


def built_index(
    root: Path, proxy: str, size: int, dtype: str, real, keep: bool, copy: bool = True
) -> tuple[dict, Path]:
    """Build the proxy's index of this size under ``root``, or reuse the one an earlier ``--keep`` run left there.

    The measurement adds 1,000 documents to the index, so a kept index is measured on a ``copy``.
    """
    name = proxy_name(proxy, size, dtype)
    path, record = root / f"index-{name}", root / f"index-{name}.json"
    if not (keep and record.is_file()):
        shutil.rmtree(path, ignore_errors=True)
        record.write_text(json.dumps(build(path, proxy, size, dtype, real)))
    if not keep or not copy:
        return json.loads(record.read_text()), path
    measured = root / f"measured-{name}"
    shutil.rmtree(measured, ignore_errors=True)
    shutil.copytree(path, measured)
    return json.loads(record.read_text()), measured


def measure(path: Path, queries_file: Path, truth_file: Path | None = None) -> dict:
    """Runs in a fresh process: open, search, memory, recall, NDCG, add 1,000 documents.

    The exact top 10 is read from ``truth_file`` when an earlier run of the same kept index saved it.
    """
    data = torch.load(queries_file)
    queries, query_ids, qrels, add = data["queries"], data["query_ids"], data["qrels"], data["add"]
    started = time.perf_counter()
    index = Index.open(path, verify=False)
    open_s = time.perf_counter() - started
    started = time.perf_counter()
    Index.open(path, verify=True)
    verify_s = time.perf_counter() - started
    latencies, hits = timed(index, queries)
    single_peak_rss = peak_rss_bytes()
    started = time.perf_counter()
    index.search_embeddings(queries, 10)
    batched_ms = (time.perf_counter() - started) * 1000 / len(queries)
    default_peak_rss = peak_rss_bytes()
    profile = profiled(index, queries)
    tradeoff = {"previous default": timed(index, queries, candidates=True, **previous_default(index))}
    for setting in data["settings"]:
        nprobe, rescore, *limit = map(int, setting.split(":"))
        search = {"nprobe": nprobe, "rescore": rescore, "rescore_limit": limit[0] if limit else 0}
        tradeoff[setting] = timed(index, queries, candidates=True, **search)
    peak_rss = peak_rss_bytes()
    reference = "exact" if index.manifest["vector_count"] <= data["exact_up_to"] else "deep"
    saved = None
    if truth_file is not None and truth_file.is_file():
        saved = [[Hit(i, s) for i, s in row] for row in json.loads(truth_file.read_text())]
    if saved is not None and reference == "deep":
        deep = saved
    else:
        deep = index.search_embeddings(queries, 10, candidates=True, **DEEP_SEARCH)
    if saved is not None:
        exact = saved
    elif reference == "exact":
        exact = index.search_embeddings(queries, 10, candidates=False)  # all at once: the index is decoded once
    else:
        exact = deep
    if truth_file is not None:
        truth_file.write_text(json.dumps(exact))
    exact_ids = [[h.id for h in row] for row in exact]
    hit_ids = [[h.id for h in row] for row in hits]
    run = {q: judged(row) for q, row in zip(query_ids, hits)}
    exact_run = {q: judged(row) for q, row in zip(query_ids, exact)}
    curve = {}
    for setting, (ms, got) in tradeoff.items():
        curve[setting] = {"median_ms": statistics.median(ms), "p95_ms": percentile_95(ms)}
        curve[setting]["recall@10"] = recall([[h.id for h in row] for row in got], exact_ids)
    started = time.perf_counter()
    index.add_documents(*add)
    add_s = time.perf_counter() - started
    return {
        "open_s": open_s,
        "open_verified_s": verify_s,
        "median_ms": statistics.median(latencies),
        "p95_ms": percentile_95(latencies),
        "batched_ms_per_query": batched_ms,
        "peak_rss_single_bytes": single_peak_rss,
        "peak_rss_default_bytes": default_peak_rss,
        "profile": profile,
        "peak_rss_bytes": peak_rss,
        "tradeoff": curve,
        "reference": reference,
        "deep_recall@10": recall([[h.id for h in row] for row in deep], exact_ids),
        "recall@10": recall(hit_ids, exact_ids),
        "ndcg@10": mean_metrics(run, qrels)["ndcg@10"],
        "exact_ndcg@10": mean_metrics(exact_run, qrels)["ndcg@10"],
        "add_1000_s": add_s,
        "hits": hit_ids,
    }


# The reference above --exact-up-to vectors, where an exact scan of 100 queries takes too long here: every
# query token probes 1,024 lists (16 times the default) and 16,384 documents are rescored. Below that size
# the benchmark measures how much of the exact top 10 it finds (its "deep_recall@10").
DEEP_SEARCH = {"nprobe": 1024, "rescore": 16384, "rescore_limit": 0}


def previous_default(index: Index) -> dict[str, int]:
    """The candidate stage's defaults before the stopping rule: 1.2 documents per thousand rescored, at
    least 256, and no rule (measured side by side with today's defaults)."""
    return {"nprobe": index.search_defaults().nprobe, "rescore": max(256, len(index) * 3 // 2500), "rescore_limit": 0}


def profiled(index: Index, queries: list[torch.Tensor]) -> dict[str, float]:
    """Where a default single-query search spends its time, medians over the queries: the query's
    centroid scores and lists (``_probe``), the segments' probe kernels, the exact rescoring
    (``_exact_scores``, wall time of each round summed); and what it reads: rows scored by the probe
    (the probed lists' lengths summed over tokens and segments), documents rescored, segments."""
    import latepool.index.search as search

    spent: dict[str, float] = {}
    rows_read = [0]

    def wrapped(name, function):
        def call(*args, **kwargs):
            started = time.perf_counter()
            result = function(*args, **kwargs)
            spent[name] = spent.get(name, 0.0) + (time.perf_counter() - started) * 1000
            if name == "exact_ms":
                spent["rescored"] = spent.get("rescored", 0) + len(result[0])
            if name == "centroids_ms":
                probe = result[0]
                for view in index._snapshot.views:
                    sizes = np.diff(view.segment.ivf_offsets)
                    rows_read[0] += int(sizes[probe.cells[probe.cells >= 0]].sum())
            return result

        return call

    originals = {"_probe": search._probe, "_exact_scores": search._exact_scores}
    search._probe = wrapped("centroids_ms", search._probe)
    search._exact_scores = wrapped("exact_ms", search._exact_scores)
    rows = {key: [] for key in ("total_ms", "centroids_ms", "probe_ms", "exact_ms", "rows", "rescored")}
    try:
        for query in queries:
            spent.clear()
            rows_read[0] = 0
            started = time.perf_counter()
            index.search_embeddings([query], 10, candidates=True)
            total = (time.perf_counter() - started) * 1000
            rows["total_ms"].append(total)
            rows["centroids_ms"].append(spent["centroids_ms"])
            rows["exact_ms"].append(spent.get("exact_ms", 0.0))
            rows["probe_ms"].append(total - spent["centroids_ms"] - spent.get("exact_ms", 0.0))
            rows["rows"].append(rows_read[0])
            rows["rescored"].append(spent.get("rescored", 0))
    finally:
        search._probe, search._exact_scores = originals["_probe"], originals["_exact_scores"]
    return {key: statistics.median(values) for key, values in rows.items()} | {
        "segments": len(index._snapshot.views),
        "mean_rescored": statistics.mean(rows["rescored"]),
    }


def judged(hits: list[Hit]) -> dict[str, float]:
    """A query's run for the qrels: a chunk counts as its document (at its best chunk's score)."""
    run: dict[str, float] = {}
    for hit in hits:
        document = hit.id.split(CHUNK_ID)[0]
        run[document] = max(run.get(document, hit.score), hit.score)
    return run


def timed(index: Index, queries: list[torch.Tensor], **search) -> tuple[list[float], list[list[Hit]]]:
    """Milliseconds and top 10 of each query, searched one at a time."""
    latencies, hits = [], []
    for query in queries:
        started = time.perf_counter()
        hits.append(index.search_embeddings([query], 10, **search)[0])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, hits


def percentile_95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


EDGE_PREFETCH_CURVE = (400, 0)  # Qdrant Edge's other settings: a deeper prefetch, and 0, its exact MaxSim scan


def measure_edge(documents_file: Path, queries_file: Path, shard_dir: Path) -> dict:
    """Runs in a fresh process: a Qdrant Edge shard of the same documents, searched at latepool's
    defaults (and the :data:`EDGE_PREFETCH_CURVE` settings, for its latency at higher recall)."""
    from qdrant_edge import EdgeShard

    from latepool.index.qdrant import PREFETCH, export_edge, search_edge

    documents = torch.load(documents_file)["documents"]
    queries = torch.load(queries_file)["queries"]
    dim = int(documents[0].shape[1])
    batches = ((list(map(str, range(a, a + 1000))), documents[a : a + 1000]) for a in range(0, len(documents), 1000))
    started = time.perf_counter()
    export_edge(batches, shard_dir, dim=dim).close()
    build_s = time.perf_counter() - started
    del documents
    started = time.perf_counter()
    shard = EdgeShard.load(str(shard_dir))
    open_s = time.perf_counter() - started
    latencies, hits = edge_timed(shard, queries, PREFETCH)
    started = time.perf_counter()
    search_edge(shard, queries, 10)
    batched = (time.perf_counter() - started) * 1000 / len(queries)
    curve = {}
    for prefetch in EDGE_PREFETCH_CURVE:
        ms, got = edge_timed(shard, queries, prefetch)
        curve[str(prefetch)] = {"median_ms": statistics.median(ms), "p95_ms": percentile_95(ms), "hits": got}
    return {
        "curve": curve,
        "build_s": build_s,
        "open_s": open_s,
        "bytes": directory_bytes(shard_dir),
        "median_ms": statistics.median(latencies),
        "p95_ms": percentile_95(latencies),
        "batched_ms_per_query": batched,
        "peak_rss_bytes": peak_rss_bytes(),
        "hits": hits,
    }


def edge_timed(shard, queries: list[torch.Tensor], prefetch: int) -> tuple[list[float], list[list[int]]]:
    """Milliseconds and top 10 (positions) of each query on a Qdrant Edge shard, one at a time."""
    from latepool.index.qdrant import search_edge

    latencies, hits = [], []
    for query in queries:
        started = time.perf_counter()
        hits.append([int(h.id) for h in search_edge(shard, [query], 10, prefetch=prefetch or None)[0]])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, hits


FAST_PLAID_VENV = Path.home() / ".cache" / "latepool" / "fast-plaid-1.7.0.2110-venv"


def fast_plaid_python() -> Path | None:
    """fast-plaid's own virtualenv (made once: it pins torch 2.11); None when it cannot be installed."""
    python = FAST_PLAID_VENV / "bin" / "python"
    if (FAST_PLAID_VENV / "latepool-ready").is_file():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(FAST_PLAID_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "fast-plaid==1.7.0.2110"], check=True)
    except subprocess.CalledProcessError as error:
        print(f"fast-plaid could not be installed ({error}); it is left out", flush=True)
        return None
    (FAST_PLAID_VENV / "latepool-ready").write_text("fast-plaid==1.7.0.2110\n")
    return python


def run_peers(
    root: Path, proxy: str, size: int, real, queries: list[torch.Tensor], engines: set[str], keep: Path | None = None
) -> dict:
    """``engines`` (fast-plaid, qdrant-edge) on the float32 documents of this size.

    Recall is measured against exact MaxSim over those float32 documents. With ``keep``, fast-plaid's
    index is built there, and a later run searches it again instead of rebuilding it.
    """
    ids, documents = [], []
    for batch_ids, batch_docs in proxy_corpus(proxy, size, real):
        ids += batch_ids
        documents += batch_docs
    scores, positions = maxsim_topk(queries, PackedDocuments.pack(documents), 10)
    truth = [[ids[p] for p in row] for row in positions.tolist()]
    documents_file, queries_file = root / f"documents-{size}.pt", root / f"peer-queries-{size}.pt"
    torch.save({"documents": documents}, documents_file)
    torch.save({"queries": queries}, queries_file)
    del documents
    results = {}
    python = fast_plaid_python() if "fast-plaid" in engines else None
    if python is not None:
        out = root / f"fast-plaid-{size}.json"
        runner = Path(__file__).with_name("peers") / "fast_plaid_run.py"
        index_dir = (keep or root) / f"fp-{proxy_name(proxy, size, 'float32')}"
        subprocess.run(
            [str(python), str(runner), str(documents_file), str(queries_file), str(index_dir), str(out)],
            check=True,
            capture_output=True,
        )
        results["fast-plaid"] = json.loads(out.read_text())
    if "qdrant-edge" in engines:
        edge = [sys.executable, __file__, "--edge", str(documents_file), str(queries_file), str(root / f"edge-{size}")]
        child = subprocess.run(edge, check=True, capture_output=True, text=True)
        results["qdrant-edge"] = json.loads(child.stdout.strip().splitlines()[-1])
    for result in results.values():
        hits = [[ids[int(p)] for p in row] for row in result.pop("hits")]
        result["recall@10_float32"] = recall(hits, truth)
        for point in result.get("curve", {}).values():
            point["recall@10_float32"] = recall([[ids[int(p)] for p in row] for row in point.pop("hits")], truth)
    documents_file.unlink()
    return {"truth": truth, "peers": results}


def recall(hits: list[list[str]], truth: list[list[str]]) -> float:
    return sum(len(set(a) & set(b)) for a, b in zip(hits, truth)) / (10 * len(truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="Comma-separated index sizes (documents).")
    parser.add_argument("--dtype", default="residual2", help="Index storage type.")
    parser.add_argument(
        "--proxies",
        default="standard",
        help="Comma-separated corpora: standard (real plus documents mixed from three real ones), chunks "
        "(64-token chunks with 50%% overlap), copies (10-50 perturbed copies of each document).",
    )
    parser.add_argument("--queries", type=int, default=100, help="Real queries (half SciFact, half NFCorpus).")
    parser.add_argument("--root", type=Path, default=None, help="Where the indexes are built (default: a temp dir).")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="Keep the indexes in this directory, and reuse one built there by an earlier run (default: not kept).",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="Embedding cache.")
    parser.add_argument("--peers", action="store_true", help="Also run fast-plaid and Qdrant Edge.")
    parser.add_argument("--peer-limit", type=int, default=100_000, help="Largest size the peers run at.")
    parser.add_argument(
        "--peer-engines", default="fast-plaid,qdrant-edge", help="Which peers --peers runs (comma-separated)."
    )
    parser.add_argument("--build-only", action="store_true", help="Only build (and --keep) the indexes.")
    parser.add_argument(
        "--exact-up-to",
        type=int,
        default=60_000_000,
        help="Largest index (vectors) whose recall reference is the exact scan; above it, a deep candidate search "
        "(DEEP_SEARCH), whose agreement with the exact scan is measured at the smaller sizes.",
    )
    parser.add_argument(
        "--settings",
        default="64:256,64:512,64:1024,96:1200,64:128:2048,64:256:2048,96:256:4096,128:256:4096",
        help="nprobe:rescore (no stopping rule) or nprobe:rescore:limit (the rule, up to limit) settings whose "
        "latency and recall are also measured (the recall-latency curve); the previous default is always measured.",
    )
    parser.add_argument("--measure", nargs="+", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--edge", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    if args.edge:
        print(json.dumps(measure_edge(*args.edge)))
        return
    proxies = [p for p in args.proxies.split(",") if p]
    if unknown := set(proxies) - set(PROXIES):
        parser.error(f"unknown proxies {sorted(unknown)}; choose from {', '.join(PROXIES)}")
    loaded = real_collections(args.cache_dir, args.queries // 2, blocks="chunks" in proxies)
    ids, documents, query_ids, queries, qrels, blocks = loaded
    print(f"real: {len(ids)} pooled documents, {sum(len(d) for d in documents)} vectors, {len(queries)} queries")
    add = next(synthetic_batches(documents, 1000, 1000, seed=3))
    add = ([f"added:{i}" for i in range(1000)], add[1])
    with tempfile.TemporaryDirectory(dir=args.root) as root:
        queries_file = Path(root) / "queries.pt"
        settings = [s for s in args.settings.split(",") if s]
        torch.save(
            {
                "queries": queries,
                "query_ids": query_ids,
                "qrels": qrels,
                "add": add,
                "settings": settings,
                "exact_up_to": args.exact_up_to,
            },
            queries_file,
        )
        for proxy, size in itertools.product(proxies, [int(s) for s in args.sizes.split(",")]):
            keep = args.keep is not None
            real = (ids, documents, blocks)
            built, path = built_index(args.keep or Path(root), proxy, size, args.dtype, real, keep, not args.build_only)
            if args.build_only:
                print(json.dumps({"proxy": proxy, "size": size, "dtype": args.dtype, **built}), flush=True)
                continue
            name = proxy_name(proxy, size, args.dtype)
            child = subprocess.run(
                [sys.executable, __file__, "--measure", str(path), str(queries_file)]
                + ([str(args.keep / f"truth-{name}.json")] if keep else []),
                check=True,
                capture_output=True,
                text=True,
            )
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            hits = measured.pop("hits")
            row = {"proxy": proxy, "size": size, "dtype": args.dtype, **built, **measured}
            if args.peers and size <= args.peer_limit:
                engines = set(args.peer_engines.split(","))
                peers = run_peers(Path(root), proxy, size, real, queries, engines, args.keep)
                row["recall@10_float32"] = recall(hits, peers["truth"])
                row["peers"] = peers["peers"]
            print(json.dumps(row), flush=True)
            print(
                f"{proxy:>8} {size:>8} docs {built['vectors']:>9} vectors | build {built['build_s']:.0f} s | "
                f"{built['bytes'] / 1e6:.0f} MB ({built['bytes_per_vector']:.1f} B/vector) | "
                f"open {measured['open_s']:.2f} s (verified {measured['open_verified_s']:.1f} s) | "
                f"single p50 {measured['median_ms']:.1f} ms p95 {measured['p95_ms']:.1f} ms | "
                f"batched {measured['batched_ms_per_query']:.1f} ms/q | "
                f"RSS {measured['peak_rss_single_bytes'] / 1e6:.0f} MB single, "
                f"{measured['peak_rss_default_bytes'] / 1e6:.0f} MB batched "
                f"({measured['peak_rss_bytes'] / 1e6:.0f} MB after the curve) | "
                f"recall@10 {measured['recall@10']:.3f} vs {measured['reference']} "
                f"(deep search finds {measured['deep_recall@10']:.3f} of it) | NDCG@10 {measured['ndcg@10']:.4f} "
                f"(exact {measured['exact_ndcg@10']:.4f}) | add 1,000 docs {measured['add_1000_s']:.1f} s",
                flush=True,
            )
            profile = measured["profile"]
            print(
                f"{'':>8} where a default query's time goes (medians): total {profile['total_ms']:.1f} ms = "
                f"centroids {profile['centroids_ms']:.1f} + probe {profile['probe_ms']:.1f} + exact "
                f"{profile['exact_ms']:.1f} ms | "
                f"{profile['rows']:,.0f} rows probed, {profile['rescored']:,.0f} documents rescored "
                f"(mean {profile['mean_rescored']:,.0f}), {profile['segments']} segments",
                flush=True,
            )
            for setting, point in measured["tradeoff"].items():
                print(
                    f"{'':>8} nprobe:rescore[:limit] {setting:>16} | single p50 {point['median_ms']:.1f} ms "
                    f"p95 {point['p95_ms']:.1f} ms | recall@10 {point['recall@10']:.3f}",
                    flush=True,
                )
            for name, peer in row.get("peers", {}).items():
                print(
                    f"{'':>8} {name:>12} | build {peer['build_s']:.0f} s | {peer['bytes'] / 1e6:.0f} MB | "
                    f"open {peer['open_s']:.2f} s | "
                    f"single p50 {peer['median_ms']:.1f} ms p95 {peer['p95_ms']:.1f} ms | "
                    f"batched {peer['batched_ms_per_query']:.1f} ms/q | RSS {peer['peak_rss_bytes'] / 1e6:.0f} MB | "
                    f"recall@10 vs float32 exact {peer['recall@10_float32']:.3f} "
                    f"(latepool {row['recall@10_float32']:.3f})",
                    flush=True,
                )
                for prefetch, point in peer.get("curve", {}).items():
                    print(
                        f"{'':>8} {name:>12} | prefetch {prefetch} (0: exact scan) | single p50 "
                        f"{point['median_ms']:.1f} ms p95 {point['p95_ms']:.1f} ms | "
                        f"recall@10 vs float32 exact {point['recall@10_float32']:.3f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
