"""``latepool index build|add|delete|compact|export-qdrant``: manage a pooled multi-vector index."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from latepool.index.storage import DTYPES
from latepool.pooling import POOL_METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="Build, update, compact or export a pooled index.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser("build", help="Encode and pool a corpus into a new index.")
    build.add_argument("--model", required=True, help="ColBERT checkpoint, hub id, or 'minilm'.")
    build.add_argument(
        "--corpus", type=Path, required=True, help="BEIR dir or corpus.jsonl, or jsonl/parquet of {id, text[, title]}."
    )
    build.add_argument("--output", type=Path, required=True)
    build.add_argument("--pool-method", choices=POOL_METHODS, default="kmeans")
    build.add_argument("--pool-factor", type=float, default=4)
    build.add_argument("--dtype", choices=DTYPES, default="float16")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--query-length", type=int, default=None, help="Override the model's query length.")
    build.add_argument("--document-length", type=int, default=None, help="Override the model's document length.")
    build.add_argument("--device", default=None)
    build.add_argument("--no-centroids", action="store_true", help="Skip the candidate-generation centroids.")
    build.add_argument("--overwrite", action="store_true", help="Replace an index already at --output.")
    build.set_defaults(run=run_build)

    add = actions.add_parser("add", help="Add documents to an index.")
    add.add_argument("--index", type=Path, required=True)
    add.add_argument("--corpus", type=Path, required=True)
    add.add_argument("--replace", action="store_true", help="Replace documents whose id already exists.")
    add.add_argument("--model", default=None, help="Override the manifest's model.")
    add.set_defaults(run=run_add)

    delete = actions.add_parser("delete", help="Delete documents by id.")
    delete.add_argument("--index", type=Path, required=True)
    delete.add_argument("--ids", required=True, help="Comma-separated document ids.")
    delete.set_defaults(run=run_delete)

    compact = actions.add_parser("compact", help="Rewrite live documents into one segment, reclaiming space.")
    compact.add_argument("--index", type=Path, required=True)
    compact.set_defaults(run=run_compact)

    export = actions.add_parser("export-qdrant", help="Write the pooled multi-vectors into a Qdrant collection.")
    export.add_argument("--index", type=Path, required=True)
    export.add_argument("--collection", required=True)
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="Qdrant server or cluster, e.g. http://localhost:6333")
    target.add_argument("--qdrant-path", help="Embedded local Qdrant store directory.")
    export.add_argument("--api-key", default=None)
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(run=run_export)


def _load(model_name: str, device=None, query_length=None, document_length=None):
    from latepool.models import load_model, set_lengths

    model = load_model(model_name, device=device)
    set_lengths(model, query_length, document_length)
    return model


def run_build(args: argparse.Namespace) -> int:
    from latepool.data import read_corpus
    from latepool.index import Index

    ids, texts = read_corpus(args.corpus)
    model = _load(args.model, args.device, args.query_length, args.document_length)
    started = time.perf_counter()
    index = Index.build(
        args.output,
        model,
        ids,
        texts,
        model_name=args.model,
        pool_method=args.pool_method,
        pool_factor=args.pool_factor,
        dtype=args.dtype,
        batch_size=args.batch_size,
        centroids=not args.no_centroids,
        overwrite=args.overwrite,
    )
    manifest = index.manifest
    print(
        f"indexed {manifest['document_count']} documents, {manifest['vector_count']} vectors "
        f"({args.pool_method} PF{args.pool_factor:g}, {args.dtype}) "
        f"in {time.perf_counter() - started:.0f} s -> {args.output}"
    )
    return 0


def _open(path: Path, model_name: str | None = None):
    from latepool.index import Index

    return Index.open(path, model=model_name)


def run_add(args: argparse.Namespace) -> int:
    from latepool.data import read_corpus

    ids, texts = read_corpus(args.corpus)
    index = _open(args.index, args.model)
    index.add(ids, texts, replace=args.replace)
    print(f"added {len(ids)} documents; the index holds {len(index)}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    index = _open(args.index)
    deleted = index.delete([i.strip() for i in args.ids.split(",") if i.strip()])
    print(f"deleted {deleted} documents; the index holds {len(index)}")
    return 0


def run_compact(args: argparse.Namespace) -> int:
    index = _open(args.index)
    index.compact()
    print(f"compacted: {len(index)} documents, {index.manifest['vector_count']} vectors")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from latepool.extras import require

    require("qdrant", "latepool index export-qdrant")
    from latepool.index.qdrant import connect, export_index

    index = _open(args.index)
    client = connect(url=args.url, path=args.qdrant_path, api_key=args.api_key)
    try:
        count = export_index(index, client, args.collection, overwrite=args.overwrite)
    finally:
        client.close()
    print(f"exported {count} documents to Qdrant collection {args.collection!r}")
    return 0
