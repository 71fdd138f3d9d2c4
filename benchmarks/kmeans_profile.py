"""Where torch k-means spends its time, and what cheaper seedings would cost in clustering quality.

Context: issue #2 asks for torch k-means >= 50x the per-document sklearn loop at PF4. On the same
SciFact MiniLM embeddings as benchmarks/pooling.py, this prints:

1. sklearn's time per document (the reference) and the time budget that 50x leaves;
2. latepool's split: ``pool_documents`` in all, of which k-means++ seeding and Lloyd iterations,
   and sklearn's Lloyd iterations per document;
3. the matrix products any greedy k-means++ + Lloyd needs (the dot products of all token pairs
   for seeding, two assignment passes), timed at this CPU's best batched ``bmm`` throughput;
4. mean inertia against sklearn's of cheaper seedings: fewer local trials, strided tokens, span means.

    python benchmarks/kmeans_profile.py --documents 512 --reference-documents 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from sklearn.cluster import KMeans

from latepool.pooling import pool_documents
from latepool.pooling.batch import TokenBatch, cluster_means, num_clusters, to_token_batch
from latepool.pooling.kmeans import _kmeans_plus_plus, _lloyd, max_iterations, sklearn_kmeans_labels
from latepool.pooling.span import span_labels
from pooling import DATA, inertia, load_embeddings


def padded(docs: list[torch.Tensor], pool_factor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Poolable tokens of ``docs`` sorted by cluster count (as torch k-means sorts them), zero-padded."""
    batch = to_token_batch(docs, None, 1)
    k = num_clusters(batch.num_poolable, pool_factor)
    order = torch.argsort(k, descending=True, stable=True)
    valid = batch.poolable[order]
    return batch.embeddings[order].float() * valid[:, :, None], valid, k[order]


def best_time(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def bmm_throughput(batch: int, rows: int, cols: int, dim: int, dtype: torch.dtype) -> float:
    """Best GFLOP/s of ``(batch, rows, dim) @ (batch, dim, cols)`` on this machine."""
    a, b = torch.randn(batch, rows, dim).to(dtype), torch.randn(batch, dim, cols).to(dtype)
    return 2 * batch * rows * cols * dim / best_time(lambda: torch.bmm(a, b), repeats=5) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DATA)
    parser.add_argument("--documents", type=int, default=512)
    parser.add_argument("--reference-documents", type=int, default=200, help="documents pooled by sklearn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pool-factor", type=float, default=4)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "latepool" / "benchmarks")
    args = parser.parse_args()
    docs = load_embeddings(args.corpus, 1000, args.cache_dir)[: args.documents]
    reference, pf, size = docs[: args.reference_documents], args.pool_factor, args.batch_size
    batches = [padded(docs[s : s + size], pf) for s in range(0, len(docs), size)]
    per_doc = 1e3 / len(docs)  # seconds over all documents -> ms per document

    # 1. the reference and the budget
    x_ref, valid_ref, k_ref = padded(reference, pf)
    sklearn_s, sklearn_iters = 0.0, []
    for doc, keep, k in zip(x_ref, valid_ref, k_ref.tolist()):
        points = doc[keep].numpy()
        started = time.perf_counter()
        model = KMeans(k, random_state=42, tol=1e-4, max_iter=max_iterations(len(points), k)).fit(points)
        sklearn_s += time.perf_counter() - started
        sklearn_iters.append(model.n_iter_)
    sklearn_ms = sklearn_s * 1e3 / len(reference)
    print(f"{len(docs)} documents, PF{pf:g}, batches of {size}, torch threads {torch.get_num_threads()}")
    print(f"sklearn KMeans per document: {sklearn_ms:.2f} ms/doc; 50x leaves {sklearn_ms / 50 * 1e3:.0f} us/doc")
    mean_iters = sum(sklearn_iters) / len(sklearn_iters)
    print(f"sklearn Lloyd iterations per document: mean {mean_iters:.1f}, max {max(sklearn_iters)}")

    # 2. latepool's split
    pooled = best_time(
        lambda: [pool_documents(docs[s : s + size], method="kmeans", pool_factor=pf) for s in range(0, len(docs), size)]
    )
    seeds = [_kmeans_plus_plus(x, v, k, 42) for x, v, k in batches]
    seeding = best_time(lambda: [_kmeans_plus_plus(x, v, k, 42) for x, v, k in batches])
    lloyd = best_time(lambda: [_lloyd(x, v, k, c.clone(), 1e-4) for (x, v, k), c in zip(batches, seeds)])
    print(
        f"latepool pool_documents: {pooled * per_doc * 1e3:.0f} us/doc "
        f"({sklearn_ms / (pooled * per_doc):.1f}x sklearn); "
        f"seeding {seeding * per_doc * 1e3:.0f} us/doc, Lloyd {lloyd * per_doc * 1e3:.0f} us/doc, "
        f"the rest (padding, cluster means, sorting) {(pooled - seeding - lloyd) * per_doc * 1e3:.0f} us/doc"
    )

    # 3. the matrix products alone, at the documents' own lengths, at the best bmm throughput
    n = torch.cat([v.sum(dim=1) for _, v, _ in batches]).double()
    k = torch.cat([k for _, _, k in batches]).double()
    dim = batches[0][0].shape[-1]
    flops = float((2 * n * n * dim + 2 * 2 * n * k * dim).sum()) / len(docs)
    length, clusters = int(n.mean()), int(k.mean())
    for dtype in (torch.float32, torch.bfloat16):
        gram = bmm_throughput(size, length, length, dim, dtype)
        assign = bmm_throughput(size, length, clusters, dim, dtype)
        rate = max(gram, assign)
        print(
            f"{str(dtype)[6:]} bmm on this CPU: {gram:.0f} GFLOP/s (token pairs), {assign:.0f} GFLOP/s (assignment); "
            f"{flops / 1e6:.1f} MFLOP/doc of products take >= {flops / rate / 1e3:.0f} us/doc"
        )

    # 4. cheaper seedings: inertia after Lloyd against sklearn's
    sklearn_labels = torch.stack(
        [
            torch.zeros(x_ref.shape[1], dtype=torch.long).masked_scatter_(keep, sklearn_kmeans_labels(doc[keep], kk))
            for doc, keep, kk in zip(x_ref, valid_ref, k_ref.tolist())
        ]
    )
    reference_inertia = inertia(x_ref, valid_ref, sklearn_labels)
    seedings = {"greedy k-means++, 2 + ln k trials (sklearn's)": _kmeans_plus_plus(x_ref, valid_ref, k_ref, 42)}
    for trials in (3, 2, 1):
        seedings[f"k-means++, {trials} trial(s)"] = _kmeans_plus_plus(x_ref, valid_ref, k_ref, 42, trials=trials)
    strided = (torch.arange(int(k_ref[0]))[None, :] * valid_ref.sum(dim=1, keepdim=True)) // k_ref[:, None]
    valid_positions = torch.argsort((~valid_ref).byte(), dim=1, stable=True)  # each row's valid tokens first
    picks = valid_positions.gather(1, strided.clamp(max=x_ref.shape[1] - 1))
    seedings["strided tokens"] = x_ref.gather(1, picks[:, :, None].expand(-1, -1, dim))
    unprotected = TokenBatch(x_ref, valid_ref, torch.zeros_like(valid_ref), valid_ref)
    seedings["span means"] = cluster_means(unprotected, span_labels(valid_ref, k_ref))[0]
    print("| seeding, then Lloyd | mean inertia / sklearn's |")
    print("|---|---|")
    for name, centers in seedings.items():
        labels = _lloyd(x_ref, valid_ref, k_ref, centers.clone(), 1e-4)
        print(f"| {name} | {inertia(x_ref, valid_ref, labels) / reference_inertia:.4f} |")


if __name__ == "__main__":
    main()
