"""``latepool serve``: the index's HTTP JSON API (search, add, delete, health), with keys and limits."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from latepool.commands.common import add_model_option
from latepool.options import QDRANT_PREFETCH

API_KEY_ENV = "LATEPOOL_API_KEY"  # the same name as latepool.index.server.API_KEY_ENV (no starlette import here)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="Serve an index over HTTP (JSON: /search, /add, /delete, /health).",
        description="Binds 127.0.0.1 by default. Beyond loopback an API key is required on every endpoint, "
        "unless --public-read-only is given.",
    )
    parser.add_argument("--index", type=Path, required=True, help="The index directory.")
    parser.add_argument("--host", default="127.0.0.1", help="Bind address.")
    parser.add_argument("--port", type=int, default=8000, help="Port.")
    add_model_option(parser, required=False, override=True)
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"Key clients send as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (default: ${API_KEY_ENV}; "
        "prefer the variable: a command-line key shows in the process list).",
    )
    parser.add_argument("--read-only", action="store_true", help="Refuse /add and /delete (403).")
    parser.add_argument(
        "--public-read-only",
        action="store_true",
        help="Allow a key-less server beyond loopback; it only searches.",
    )
    parser.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="Largest request body (413).")
    parser.add_argument("--max-documents", type=int, default=1000, help="Documents (or ids) per /add or /delete.")
    parser.add_argument("--max-queries", type=int, default=256, help="Queries per /search.")
    parser.add_argument("--max-query-chars", type=int, default=2000, help="Characters per query.")
    parser.add_argument(
        "--max-batch-queries",
        type=int,
        default=32,
        help="Queries of concurrent searches encoded in one pass (1: each request on its own).",
    )
    qdrant = parser.add_argument_group("search through Qdrant (an export of the index: latepool index export-qdrant)")
    target = qdrant.add_mutually_exclusive_group()
    target.add_argument("--qdrant-url", default=None, help="Qdrant server or cluster node, e.g. http://localhost:6333.")
    target.add_argument("--qdrant-path", default=None, help="Embedded local Qdrant store directory (qdrant-client).")
    qdrant.add_argument("--collection", default=None, help="The Qdrant collection (with --qdrant-url/--qdrant-path).")
    qdrant.add_argument("--qdrant-api-key", default=None, help="Qdrant API key (Qdrant Cloud or a secured server).")
    qdrant.add_argument(
        "--prefetch",
        type=int,
        default=QDRANT_PREFETCH,
        help="Candidate documents from the query tokens' nearest vectors, rescored by MaxSim (0: exact MaxSim scan).",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from latepool.extras import require

    require("server", "latepool serve")
    from latepool.commands.common import open_index
    from latepool.index.server import check_bind, serve

    config = check_bind(args.host, args.api_key or os.environ.get(API_KEY_ENV) or None, args.public_read_only)
    config = replace(
        config,
        read_only=config.read_only or args.read_only,
        max_body_bytes=args.max_body_bytes,
        max_documents=args.max_documents,
        max_queries=args.max_queries,
        max_query_chars=args.max_query_chars,
        max_batch_queries=args.max_batch_queries,
    )
    if config.api_key is None and config.read_only and not args.read_only:
        print(f"latepool serve: warning: {args.host} serves searches to anyone who can reach it", file=sys.stderr)
    index = open_index(args.index, args.model)
    serve(index, host=args.host, port=args.port, config=config, qdrant=_qdrant_collection(args, index))
    return 0


def _qdrant_collection(args: argparse.Namespace, index):
    """The Qdrant collection that answers searches, checked before the server starts (None without one)."""
    if not (args.qdrant_url or args.qdrant_path):
        if args.collection:
            raise ValueError("--collection needs --qdrant-url or --qdrant-path")
        return None
    if not args.collection:
        raise ValueError("--qdrant-url/--qdrant-path needs --collection")
    if args.prefetch < 0:
        raise ValueError(f"--prefetch must be >= 0, got {args.prefetch}")
    from latepool.extras import require

    require("qdrant", "latepool serve --qdrant-url/--qdrant-path")
    from latepool.index.qdrant import QdrantCollection, connect

    client = connect(url=args.qdrant_url, path=args.qdrant_path, api_key=args.qdrant_api_key)
    dim = int(index.manifest["dim"])
    return QdrantCollection.open(client, args.collection, dim=dim, prefetch=args.prefetch or None)
