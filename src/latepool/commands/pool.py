"""``latepool pool``: encode documents with a ColBERT model, pool them, and report the reduction."""

from __future__ import annotations

import argparse
import time

from latepool.commands.common import add_corpus_option, add_device_option, add_model_option
from latepool.options import KMEANS_BACKENDS, POOL_METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pool", help="Encode and pool documents, print vector counts and pooling speed.")
    add_model_option(parser, required=False, default="minilm")
    add_corpus_option(parser)
    parser.add_argument("--limit", type=int, default=64, help="Documents to encode.")
    parser.add_argument("--method", choices=POOL_METHODS, default="kmeans", help="Pooling method.")
    parser.add_argument("--pool-factor", type=float, default=4.0, help="Pool factor.")
    parser.add_argument("--backend", choices=KMEANS_BACKENDS, default="torch", help="k-means backend.")
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from latepool.data import read_corpus
    from latepool.models import load_model
    from latepool.pooling import pool_documents

    texts = read_corpus(args.corpus)[1][: args.limit]
    model = load_model(args.model, device=args.device)
    started = time.perf_counter()
    embeddings = model.encode_document(texts, batch_size=16, show_progress_bar=True)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    with torch.inference_mode():
        pooled = pool_documents(embeddings, method=args.method, pool_factor=args.pool_factor, backend=args.backend)
    pool_s = time.perf_counter() - started
    before, after = sum(len(e) for e in embeddings), sum(len(p) for p in pooled)
    print(f"documents: {len(texts)}  encode: {encode_s:.1f} s ({len(texts) / encode_s:.1f} docs/s)")
    print(
        f"{args.method} PF{args.pool_factor:g} ({args.backend}): {before} -> {after} vectors "
        f"({before / max(after, 1):.2f}x fewer) in {pool_s:.3f} s ({len(texts) / pool_s:.0f} docs/s)"
    )
    return 0
