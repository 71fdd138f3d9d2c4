"""Pooling speed and k-means quality on real SciFact token embeddings.

Encodes SciFact documents once with the bundled all-MiniLM-L6-v2 ColBERT (document length 300,
64 dims; cached under --cache-dir), then pools the same embeddings with torch k-means, the
per-document sklearn reference, hierarchical and span at PF 2, 4, 6. Prints documents/s, the
torch/sklearn speed ratio (both on the same documents, in this run) and the mean inertia ratio.

    python benchmarks/pooling.py --documents 1000 --reference-documents 200 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from latepool.pooling import pool_documents
from latepool.pooling.batch import to_token_batch
from latepool.pooling.functional import _cluster_labels

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def load_embeddings(corpus: Path, count: int, cache_dir: Path) -> list[torch.Tensor]:
    cache = cache_dir / f"scifact-minilm-300-{count}.pt"
    if cache.exists():
        return torch.load(cache)
    from latepool.data import read_corpus
    from latepool.models import load_model

    texts = read_corpus(corpus)[1][:count]
    model = load_model("minilm", device="cpu")
    started = time.perf_counter()
    embeddings = [e.cpu() for e in model.encode_document(texts, batch_size=32, show_progress_bar=True)]
    print(f"encoded {len(texts)} documents in {time.perf_counter() - started:.1f} s")
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(embeddings, cache.with_suffix(".tmp"))
    cache.with_suffix(".tmp").replace(cache)
    return embeddings


def pool_rate(docs: list[torch.Tensor], batch_size: int, repeats: int = 1, **kwargs) -> float:
    """Documents per second of ``pool_documents`` over ``docs`` in batches (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(docs), batch_size):
            pool_documents(docs[start : start + batch_size], **kwargs)
        if docs and docs[0].is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return len(docs) / best


def inertia(points: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor) -> float:
    """Summed squared distance of every valid token to its cluster's mean, over a padded batch."""
    total = 0.0
    for doc, keep, doc_labels in zip(points, valid, labels):
        x, lab = doc[keep].float(), doc_labels[keep]
        means = torch.zeros(int(lab.max()) + 1, x.shape[1]).index_add_(0, lab, x)
        means /= torch.bincount(lab).clamp(min=1)[:, None]
        total += float(((x - means[lab]) ** 2).sum())
    return total


def mean_inertia(docs: list[torch.Tensor], pool_factor: float, backend: str) -> float:
    batch = to_token_batch(docs, None, 1)
    labels = _cluster_labels(batch, "kmeans", pool_factor, backend, 42)
    return inertia(batch.embeddings, batch.poolable, labels) / len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DATA)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--reference-documents", type=int, default=200, help="documents pooled by sklearn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "latepool" / "benchmarks")
    args = parser.parse_args()

    docs = [d.to(args.device) for d in load_embeddings(args.corpus, args.documents, args.cache_dir)]
    reference = docs[: args.reference_documents]
    tokens = sum(len(d) for d in docs) / len(docs)
    print(
        f"{len(docs)} SciFact documents, {tokens:.0f} tokens each on average, dim {docs[0].shape[1]}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    pool_rate(docs[:64], args.batch_size, method="kmeans", pool_factor=4)  # warm-up
    print(
        "| PF | torch k-means docs/s | same docs | sklearn docs/s | torch/sklearn | inertia torch/sklearn "
        "| hierarchical docs/s | span docs/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for pool_factor in (2, 4, 6):
        torch_all = pool_rate(docs, args.batch_size, method="kmeans", pool_factor=pool_factor)
        torch_ref = pool_rate(reference, args.batch_size, repeats=3, method="kmeans", pool_factor=pool_factor)
        sklearn_ref = pool_rate(
            [d.cpu() for d in reference], args.batch_size, method="kmeans", pool_factor=pool_factor, backend="sklearn"
        )
        ratio = mean_inertia(reference, pool_factor, "torch") / mean_inertia(
            [d.cpu() for d in reference], pool_factor, "sklearn"
        )
        hierarchical = pool_rate(reference, args.batch_size, method="hierarchical", pool_factor=pool_factor)
        span = pool_rate(docs, args.batch_size, repeats=3, method="span", pool_factor=pool_factor)
        print(
            f"| {pool_factor} | {torch_all:.0f} | {torch_ref:.0f} | {sklearn_ref:.1f} | {torch_ref / sklearn_ref:.1f}x "
            f"| {ratio:.4f} | {hierarchical:.0f} | {span:.0f} |"
        )
    print(json.dumps({"documents": len(docs), "reference_documents": len(reference), "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
