"""Index size and search speed on SciFact (MiniLM ColBERT, k-means PF4), measured side by side.

Prints: index bytes (pooled float16, pooled int8) against the unpooled float32 vectors; exact
search queries/s of latepool's index against sentence-transformers' ``maxsim`` brute force on the
same pooled vectors; candidate-generation recall@10 against exact search and its speed-up.

    python benchmarks/search.py --data ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sentence_transformers.util import maxsim

from latepool.data import load_dataset
from latepool.evaluation.sweep import encode_dataset
from latepool.fingerprints import model_fingerprint
from latepool.index import Index
from latepool.models import load_model
from latepool.options import DEFAULT_CACHE_DIR
from latepool.pooling import pool_corpus

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def recall_at_10(reference, candidate) -> float:
    found = sum(len({d for d, _ in a[:10]} & {d for d, _ in b[:10]}) for a, b in zip(reference, candidate))
    return found / (10 * len(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args()

    dataset = load_dataset(args.data, "test")
    model = load_model("minilm", device="cpu")  # query length 48, document length 300
    documents, queries = encode_dataset(model, dataset, args.cache_dir, model_name="minilm")
    started = time.perf_counter()
    pooled = pool_corpus(documents, "kmeans", 4, show_progress_bar=True)
    print(f"pooled {len(pooled)} documents with k-means PF4 in {time.perf_counter() - started:.1f} s")
    unpooled_bytes = sum(len(d) for d in documents) * documents[0].shape[1] * 4
    settings = {
        "model": "minilm",
        "model_hash": model_fingerprint(model),
        "query_length": 48,
        "document_length": 300,
        "pool_method": "kmeans",
        "pool_factor": 4,
    }
    with tempfile.TemporaryDirectory() as root:
        sizes = {}
        for dtype in ("float16", "int8", "residual4", "residual2", "residual1"):
            started = time.perf_counter()
            index = Index.from_documents(Path(root) / dtype, dataset.corpus_ids, pooled, {**settings, "dtype": dtype})
            sizes[dtype] = directory_bytes(Path(root) / dtype)
            print(f"{dtype} index written in {time.perf_counter() - started:.1f} s (incl. centroids)")
        print(f"unpooled float32 vectors: {unpooled_bytes / 1e6:.1f} MB")
        for dtype, size in sizes.items():
            print(f"  pooled {dtype} index: {size / 1e6:.1f} MB ({unpooled_bytes / size:.1f}x smaller)")
        index = Index.open(Path(root) / "float16", model=model)
        started = time.perf_counter()
        exact = index.search_embeddings(queries, 100, candidates=False)
        exact_s = time.perf_counter() - started
        stored = [d for _, documents in index.documents() for d in documents]
        started = time.perf_counter()
        maxsim(queries, stored).topk(100, dim=1)
        brute_s = time.perf_counter() - started
        print(
            f"exact search: {len(queries) / exact_s:.1f} queries/s; sentence-transformers maxsim brute force: "
            f"{len(queries) / brute_s:.1f} queries/s; ratio {brute_s / exact_s:.2f}x"
        )
        print(f"{len(index._snapshot.codec.centroids)} centroids over {index.manifest['vector_count']} vectors")
        for nprobe, rescore in ((1, 256), (2, 512), (4, 1024), (8, 1024), (8, 2048)):
            started = time.perf_counter()
            approximate = index.search_embeddings(queries, 10, candidates=True, nprobe=nprobe, rescore=rescore)
            seconds = time.perf_counter() - started
            print(
                f"candidates nprobe={nprobe} rescore={rescore}: recall@10 {recall_at_10(exact, approximate):.4f}, "
                f"{len(queries) / seconds:.1f} queries/s, speed-up over exact {exact_s / seconds:.2f}x"
            )


if __name__ == "__main__":
    main()
