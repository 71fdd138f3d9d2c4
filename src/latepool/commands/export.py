"""``latepool export``: convert a checkpoint between PyLate's and sentence-transformers' layouts."""

from __future__ import annotations

import argparse
from pathlib import Path

from latepool.commands.common import add_checkpoint_format_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="Write a checkpoint in PyLate's layout (default) or sentence-transformers' layout."
    )
    parser.add_argument("model", help="Checkpoint directory or hub id (PyLate, Stanford ColBERT, MultiVectorEncoder).")
    parser.add_argument("output", type=Path, help="New output directory (must be empty or absent).")
    add_checkpoint_format_option(parser, "--format")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.checkpoints import export_checkpoint

    export_checkpoint(args.model, args.output, args.checkpoint_format)
    print(f"wrote {args.model} as a {args.checkpoint_format} checkpoint -> {args.output}")
    return 0
