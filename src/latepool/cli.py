"""The ``latepool`` command line: one subcommand per task, each defined next to its own code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

from latepool import __version__
from latepool.commands import evaluate as evaluate_command
from latepool.commands import export as export_command
from latepool.commands import index as index_command
from latepool.commands import mine as mine_command
from latepool.commands import pool as pool_command
from latepool.commands import score as score_command
from latepool.commands import search as search_command
from latepool.commands import serve as serve_command
from latepool.commands import train as train_command
from latepool.commands.common import HelpFormatter
from latepool.extras import MissingExtraError

SUBCOMMANDS = [
    evaluate_command,
    pool_command,
    mine_command,
    score_command,
    train_command,
    export_command,
    index_command,
    search_command,
    serve_command,
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="latepool",
        description="Pooling-aware late-interaction (ColBERT) retrieval: pool, evaluate, fine-tune and index.",
    )
    parser.add_argument("--version", action="version", version=f"latepool {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.register(subparsers)
    for subcommand in iter_subparsers(parser):
        subcommand.formatter_class = HelpFormatter  # every option's help ends with its default
    return parser


def iter_subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every subcommand parser below ``parser`` (``index build`` and the like included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in dict.fromkeys(action.choices.values()):
                yield subparser
                yield from iter_subparsers(subparser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, as argparse does)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except FileNotFoundError as error:  # "[Errno 2] ..." names no flag; say which file is missing
        print(f"latepool {args.command}: error: file not found: {error.filename or error}", file=sys.stderr)
        return 2
    except (ValueError, UnicodeDecodeError, MissingExtraError) as error:
        print(f"latepool {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
