"""Training throughput with cached states (``--train-layers K``) against full fine-tuning, same batch.

all-MiniLM-L6-v2 ColBERT (64 dims, query length 48, document length 300) on SciFact: one batch of
``--queries`` queries x ``--n-ways`` documents (real SciFact texts), the pooling-aware KL loss with
k-means at pool factor 4, AdamW. Each setting runs ``--warmup`` untimed steps and ``--steps`` timed
steps (forward, backward, optimizer) on that same batch; the state cache is built beforehand and its
build time is printed separately. Prints documents/s per setting and the ratio to full fine-tuning.

    python benchmarks/cached_training.py [--queries 2] [--n-ways 16] [--steps 3] [--no-full]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from sentence_transformers.multi_vector_encoder.data_collator import MultiVectorEncoderDataCollator

from latepool.data import load_dataset
from latepool.models import load_student
from latepool.training.cached_states import build_state_cache, use_cached_states
from latepool.training.loss import PoolingDistillKLDivLoss

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def training_batch(model, queries: int, n_ways: int):
    """``queries`` SciFact test queries, each with ``n_ways`` consecutive corpus documents, collated."""
    dataset = load_dataset(str(DATA), split="test")
    rows = []
    for q in range(queries):
        documents = dataset.corpus_texts[q * n_ways : (q + 1) * n_ways]
        row = {"query": dataset.query_texts[q], **{f"document_{i + 1}": d for i, d in enumerate(documents)}}
        rows.append({**row, "label": [1.0 - i / n_ways for i in range(n_ways)]})  # cosine-like
    collated = MultiVectorEncoderDataCollator(preprocess_fn=model.preprocess)(rows)
    columns = ["query"] + [f"document_{i + 1}" for i in range(n_ways)]
    features = [{k[len(c) + 1 :]: v for k, v in collated.items() if k.startswith(c + "_")} for c in columns]
    texts = {"query": [r["query"] for r in rows], "document": [r[c] for r in rows for c in columns[1:]]}
    return features, collated["label"], texts


def steps_per_second(model, features, labels, steps: int, warmup: int) -> float:
    """Timed optimizer steps per second on one batch."""
    loss = PoolingDistillKLDivLoss(model, pool_method="kmeans", pool_factors=[4], teacher_temperature=0.05)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        optimizer.zero_grad()
        loss([dict(f) for f in features], labels).backward()
        optimizer.step()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--n-ways", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--layers", default="0,1,2", help="K values to measure.")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/latepool"))
    parser.add_argument(
        "--no-full", action="store_true", help="Skip full fine-tuning (it needs ~24 GB at 16 x 16 documents)."
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_student("minilm", seed=42, device="cpu")
    features, labels, texts = training_batch(model, args.queries, args.n_ways)
    documents = args.queries * args.n_ways
    print(f"batch: {args.queries} queries x {args.n_ways} documents, kmeans PF4, threads {torch.get_num_threads()}")
    full = None if args.no_full else steps_per_second(model, features, labels, args.steps, args.warmup) * documents
    if full:
        print(f"full fine-tuning: {full:.2f} documents/s")
    for train_layers in (int(k) for k in args.layers.split(",")):
        started = time.perf_counter()
        cache = build_state_cache(model, texts, train_layers, args.cache_dir, show_progress_bar=False)
        build_s = time.perf_counter() - started
        with use_cached_states(model, cache):
            rate = steps_per_second(model, features, labels, args.steps, args.warmup) * documents
        ratio = f" = {rate / full:.1f}x full" if full else ""
        print(
            f"train_layers={train_layers}: {rate:.2f} documents/s{ratio} "
            f"(cache build or reuse {build_s:.1f} s for {len(texts['document'])} documents; misses {cache.misses})"
        )


if __name__ == "__main__":
    main()
