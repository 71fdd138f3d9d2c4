"""``latepool index build|add|delete|compact|verify|export-qdrant``: manage a pooled multi-vector index."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from latepool.commands.common import (
    add_corpus_option,
    add_device_option,
    add_length_options,
    add_model_option,
    add_qdrant_options,
    load_model_with_lengths,
    open_index,
)
from latepool.options import DTYPES, POOL_METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="Build, update, compact or export a pooled index.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser("build", help="Encode and pool a corpus into a new index.")
    add_model_option(build)
    add_corpus_option(build)
    build.add_argument("--output", type=Path, required=True, help="The new index directory.")
    build.add_argument("--pool-method", choices=POOL_METHODS, default="kmeans", help="Pooling method.")
    build.add_argument("--pool-factor", type=float, default=4, help="Pool factor (1: unpooled).")
    build.add_argument("--dtype", choices=DTYPES, default="float16", help="Storage type of the pooled vectors.")
    build.add_argument("--batch-size", type=int, default=32, help="Encoding batch size.")
    add_length_options(build)
    add_device_option(build)
    build.add_argument("--no-centroids", action="store_true", help="Skip the candidate-generation centroids.")
    build.add_argument(
        "--overwrite",
        action="store_true",
        help="Start over: discard a partial build at --output and replace an index there (readable until the "
        "new one is committed). Without it, a killed build rerun with the same arguments continues.",
    )
    build.set_defaults(run=run_build)

    add = actions.add_parser("add", help="Add documents to an index.")
    add.add_argument("--index", type=Path, required=True, help="The index directory.")
    add_corpus_option(add)
    add.add_argument("--replace", action="store_true", help="Replace documents whose id already exists.")
    add_model_option(add, required=False, override=True)
    add.set_defaults(run=run_add)

    delete = actions.add_parser("delete", help="Delete documents by id.")
    delete.add_argument("--index", type=Path, required=True, help="The index directory.")
    delete.add_argument("--ids", required=True, help="Comma-separated document ids.")
    delete.set_defaults(run=run_delete)

    compact = actions.add_parser(
        "compact",
        help="Reclaim deleted documents' space: rewrite the segments that hold them, merged with small ones "
        "(stored vectors are copied unchanged).",
    )
    compact.add_argument("--index", type=Path, required=True, help="The index directory.")
    compact.set_defaults(run=run_compact)

    verify = actions.add_parser("verify", help="Check every index file against the manifest's SHA-256.")
    verify.add_argument("--index", type=Path, required=True, help="The index directory.")
    verify.set_defaults(run=run_verify)

    export = actions.add_parser(
        "export-qdrant",
        help="Bring a Qdrant collection up to date with the index (writes only new or changed documents).",
    )
    export.add_argument("--index", type=Path, required=True, help="The index directory.")
    add_qdrant_options(export)
    export.add_argument("--overwrite", action="store_true", help="Drop an existing collection and write it anew.")
    export.add_argument("--shards", type=int, default=None, help="Shards of a new collection (a cluster's nodes).")
    export.add_argument("--replicas", type=int, default=None, help="Copies of each shard of a new collection.")
    export.set_defaults(run=run_export)


def run_build(args: argparse.Namespace) -> int:
    from latepool.data import read_corpus
    from latepool.index import Index

    ids, texts = read_corpus(args.corpus)
    model = load_model_with_lengths(args.model, args.device, args.query_length, args.document_length)
    from latepool.index.storage import PARTIAL

    if (args.output / PARTIAL).is_file() and not args.overwrite:
        print(f"continuing the partial build at {args.output} (--overwrite starts over)", file=sys.stderr)
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


def run_add(args: argparse.Namespace) -> int:
    from latepool.data import read_corpus

    ids, texts = read_corpus(args.corpus)
    index = open_index(args.index, args.model)
    index.add(ids, texts, replace=args.replace)
    print(f"added {len(ids)} documents; the index holds {len(index)}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    index = open_index(args.index)
    deleted = index.delete([i.strip() for i in args.ids.split(",") if i.strip()])
    print(f"deleted {deleted} documents; the index holds {len(index)}")
    return 0


def run_compact(args: argparse.Namespace) -> int:
    index = open_index(args.index)
    index.compact()
    print(f"compacted: {len(index)} documents, {index.manifest['vector_count']} vectors")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from latepool.index import Index

    index = Index.open(args.index, verify=True)
    manifest = index.manifest
    print(
        f"verified {len(manifest['checksums'])} files: {manifest['document_count']} documents, "
        f"{manifest['vector_count']} vectors"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from latepool.extras import require

    require("qdrant", "latepool index export-qdrant")
    from latepool.index.qdrant import connect, export_index

    for name in ("shards", "replicas"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    index = open_index(args.index)
    client = connect(url=args.url, path=args.qdrant_path, api_key=args.qdrant_api_key)
    try:
        report = export_index(
            index,
            client,
            args.collection,
            overwrite=args.overwrite,
            shard_number=args.shards,
            replication_factor=args.replicas,
        )
    finally:
        client.close()
    print(
        f"Qdrant collection {args.collection!r} holds {report.documents} documents: "
        f"{report.written} written, {report.deleted} removed"
    )
    return 0
