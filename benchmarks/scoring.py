"""Exact MaxSim search speed: latepool's tiled top-k against sentence-transformers' ``maxsim`` (same embeddings).

Encodes (or reuses from the embedding cache) SciFact test with the bundled MiniLM ColBERT, then
scores every query against every document with both implementations in this process, checks that
the scores agree, and prints queries/s, the speed ratio and latepool's peak resident memory.

    python benchmarks/scoring.py --data ../shared/data/scifact [--queries 300]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from sentence_transformers.util import maxsim

from latepool.data import load_dataset
from latepool.evaluation.sweep import encode_dataset
from latepool.models import load_model
from latepool.options import DEFAULT_CACHE_DIR
from latepool.scoring import PackedDocuments, maxsim_topk

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args()

    dataset = load_dataset(args.data, "test")
    model = load_model("minilm", device="cpu")  # query length 48, document length 300
    documents, queries = encode_dataset(model, dataset, args.cache_dir, model_name="minilm")
    queries = queries[: args.queries]
    tokens = sum(len(d) for d in documents)
    flops = 2 * sum(len(q) for q in queries) * tokens * documents[0].shape[1]
    print(f"{len(queries)} queries x {len(documents)} documents ({tokens} document tokens): {flops / 1e12:.2f} TFLOP")
    before = peak_rss_gb()
    started = time.perf_counter()
    scores, indices = maxsim_topk(queries, PackedDocuments.pack(documents), 100)
    ours = time.perf_counter() - started
    print(
        f"latepool maxsim_topk: {ours:.1f} s, {len(queries) / ours:.1f} queries/s, "
        f"{flops / ours / 1e9:.0f} GFLOP/s, peak RSS {peak_rss_gb():.2f} GB (before scoring {before:.2f} GB)"
    )
    started = time.perf_counter()
    reference = maxsim(queries, documents)
    reference_top = reference.topk(100, dim=1)
    theirs = time.perf_counter() - started
    print(f"sentence-transformers maxsim + topk: {theirs:.1f} s, {len(queries) / theirs:.1f} queries/s")
    print(f"speed ratio latepool / sentence-transformers: {theirs / ours:.2f}x")
    difference = (scores - reference_top.values).abs().max().item()
    same = (indices == reference_top.indices).float().mean().item()
    print(f"max |score difference| of the top 100: {difference:.2e}; same document at the same rank: {same:.4f}")


if __name__ == "__main__":
    main()
