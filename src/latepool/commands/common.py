"""What the subcommands share: option definitions, argument parsers, model loading and index opening.

Every command adds its model, corpus, device, length and cache options through these helpers, so a
flag means the same thing, has the same name and the same default in every command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from latepool.options import DEFAULT_CACHE_DIR, DTYPES, POOL_METHODS

if TYPE_CHECKING:
    from sentence_transformers import MultiVectorEncoder

    from latepool.index import Index

CORPUS_HELP = "BEIR directory or corpus.jsonl, or a jsonl / parquet file of {id, text[, title]}."


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, except for required options and empty defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default in (None, False, argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


MODEL_HELP = (
    "ColBERT checkpoint directory, hub id (PyLate, Stanford ColBERT or MultiVectorEncoder), "
    "or 'minilm' (the bundled all-MiniLM-L6-v2 with a new projection)."
)
OVERRIDE_MODEL_HELP = (
    "Use this model instead of the one the index manifest names (same dimension; the index's lengths)."
)


def add_model_option(
    parser: argparse.ArgumentParser, *, required: bool = True, default: str | None = None, override: bool = False
) -> None:
    """``--model``: a checkpoint directory, hub id, or ``minilm`` (``override``: replaces an index's model)."""
    parser.add_argument(
        "--model", required=required, default=default, help=OVERRIDE_MODEL_HELP if override else MODEL_HELP
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: torch device (default: sentence-transformers' choice)."""
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: sentence-transformers' choice).")


def add_corpus_option(parser: argparse.ArgumentParser) -> None:
    """``--corpus``: documents to read with :func:`latepool.data.read_corpus`."""
    parser.add_argument("--corpus", type=Path, required=True, help=CORPUS_HELP)


def add_length_options(
    parser: argparse.ArgumentParser, query_length: int | None = None, document_length: int | None = None
) -> None:
    """``--query-length`` / ``--document-length`` (None: keep the checkpoint's)."""
    keep = " (default: the checkpoint's)"
    parser.add_argument(
        "--query-length",
        type=int,
        default=query_length,
        help="Query tokens (pad target of query expansion)" + ("." if query_length else keep + "."),
    )
    parser.add_argument(
        "--document-length",
        type=int,
        default=document_length,
        help="Maximum document tokens" + ("." if document_length else keep + "."),
    )


def add_cache_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--cache-dir``: the one latepool cache directory (``$LATEPOOL_CACHE`` or ``~/.cache/latepool``)."""
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help=f"Where {what} are cached.")


def add_qdrant_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--collection`` and one of ``--url`` (a server or cluster node) / ``--qdrant-path`` (local mode)."""
    parser.add_argument("--collection", required=required, default=None, help="Qdrant collection name.")
    target = parser.add_mutually_exclusive_group(required=required)
    target.add_argument("--url", default=None, help="Qdrant server or cluster node, e.g. http://localhost:6333.")
    target.add_argument("--qdrant-path", default=None, help="Embedded local Qdrant store directory (qdrant-client).")
    parser.add_argument(
        "--qdrant-api-key", default=None, help="Qdrant API key (Qdrant Cloud or a secured server; else none)."
    )


def add_checkpoint_format_option(parser: argparse.ArgumentParser, flag: str = "--checkpoint-format") -> None:
    """``--checkpoint-format`` (``--format`` for ``export``): the layout a model is saved in."""
    from latepool.options import CHECKPOINT_FORMATS

    parser.add_argument(
        flag,
        dest="checkpoint_format",
        choices=CHECKPOINT_FORMATS,
        default="pylate",
        help="Checkpoint layout: pylate (loads in PyLate 1.6 and sentence-transformers >= 6.2) or "
        "sentence-transformers (a MultiVectorEncoder save, sentence-transformers >= 6.2 only).",
    )


def argument_type(parse):
    """``parse`` for argparse's ``type=``: its ``ValueError`` message is shown as is, not as
    "invalid <function name> value".

    Example::

        >>> argparse.ArgumentParser().add_argument("--pool-factors", type=argument_type(parse_pool_factors)).type("2")
        [2]
    """

    def parsed(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parsed.__name__ = parse.__name__
    return parsed


def parse_pool_factors(text: str) -> list[float]:
    """``"1-6"`` -> [1, ..., 6]; ``"1,2,4"`` or ``"1.5,3"`` -> that list. Every factor must be >= 1.

    Example::

        >>> parse_pool_factors("1-3,4.5")
        [1, 2, 3, 4.5]
    """
    factors: list[float] = []
    try:
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            if "-" in part:
                low, high = (int(bound) for bound in part.split("-", 1))
                factors.extend(range(low, high + 1))
            else:
                value = float(part)
                factors.append(int(value) if value.is_integer() else value)
    except ValueError:
        factors = []
    if not factors or min(factors) < 1:
        raise ValueError(f"--pool-factors must list factors >= 1, got {text!r}")
    return sorted(set(factors))


def parse_methods(text: str) -> list[str]:
    """``"kmeans,span"`` -> ``["kmeans", "span"]``; every name must be a pooling method.

    Example::

        >>> parse_methods("kmeans, hierarchical")
        ['kmeans', 'hierarchical']
    """
    methods = [piece.strip() for piece in text.split(",") if piece.strip()]
    unknown = [m for m in methods if m not in POOL_METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods takes a comma-separated subset of {POOL_METHODS}, got {text!r}")
    return methods


def parse_dtypes(text: str) -> list[str]:
    """``"float16,residual2"`` -> that list; each an index storage type or ``float32``.

    Example::

        >>> parse_dtypes("float32, residual2")
        ['float32', 'residual2']
    """
    dtypes = list(dict.fromkeys(piece.strip() for piece in text.split(",") if piece.strip()))
    allowed = ("float32", *DTYPES)
    if not dtypes or any(d not in allowed for d in dtypes):
        raise ValueError(f"--dtypes takes a comma-separated subset of {allowed}, got {text!r}")
    return dtypes


def load_model_with_lengths(
    model_name: str, device: str | None = None, query_length: int | None = None, document_length: int | None = None
) -> MultiVectorEncoder:
    """Load ``model_name`` and apply the lengths given (None keeps the checkpoint's)."""
    from latepool.models import load_model, set_lengths

    model = load_model(model_name, device=device)
    set_lengths(model, query_length, document_length)
    return model


def open_index(path: Path, model_name: str | None = None) -> Index:
    """Open the index at ``path``; its model (the manifest's, or ``model_name``) is prepared on first use."""
    from latepool.index import Index

    return Index.open(path, model=model_name)
