"""``latepool serve``: the index's HTTP JSON API (search, add, delete, health)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="Serve an index over HTTP (JSON: /search, /add, /delete, /health).")
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="Bind address (default localhost only).")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=None, help="Override the manifest's model.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.extras import require

    require("server", "latepool serve")
    from latepool.commands.index import _open
    from latepool.index.server import serve

    serve(_open(args.index, args.model), host=args.host, port=args.port)
    return 0
