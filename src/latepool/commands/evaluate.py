"""``latepool evaluate``: one checkpoint x datasets x pooling methods x pool factors, the paper's tables."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from latepool.pooling import KMEANS_BACKENDS, POOL_METHODS

DEFAULT_CACHE = Path.home() / ".cache" / "latepool" / "embeddings"


def parse_pool_factors(text: str) -> list[float]:
    """``"1-6"`` -> [1, ..., 6]; ``"1,2,4"`` or ``"1.5,3"`` -> that list. Every factor must be >= 1.

    Example::

        >>> parse_pool_factors("1-3,4.5")
        [1, 2, 3, 4.5]
    """
    factors: list[float] = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        if "-" in part:
            low, high = (int(bound) for bound in part.split("-", 1))
            factors.extend(range(low, high + 1))
        else:
            value = float(part)
            factors.append(int(value) if value.is_integer() else value)
    if not factors or min(factors) < 1:
        raise ValueError(f"--pool-factors must list factors >= 1, got {text!r}")
    return sorted(set(factors))


def parse_methods(text: str) -> list[str]:
    methods = [piece.strip() for piece in text.split(",") if piece.strip()]
    unknown = [m for m in methods if m not in POOL_METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods takes a comma-separated subset of {POOL_METHODS}, got {text!r}")
    return methods


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Evaluate a ColBERT over datasets x pooling methods x pool factors (NDCG@10, MRR@10, MAP@100, recall).",
        description="Encodes each corpus once (cached), then pools, scores (exact MaxSim) and measures every cell.",
    )
    parser.add_argument(
        "--model", required=True, help="Checkpoint directory, hub id, or 'minilm' (bundled all-MiniLM-L6-v2)."
    )
    parser.add_argument("--data", required=True, help="Comma-separated BEIR directories, or nanobeir:NAME / beir:NAME.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--methods", default="kmeans,hierarchical,span", type=parse_methods)
    parser.add_argument("--pool-factors", default="1-6", type=parse_pool_factors)
    parser.add_argument("--query-length", type=int, default=48)
    parser.add_argument("--document-length", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: sentence-transformers' choice).")
    parser.add_argument(
        "--backend",
        choices=KMEANS_BACKENDS,
        default="torch",
        help="k-means backend: torch (batched) or sklearn (the paper's per-document reference; exact only "
        "with --cache-dtype float32). Default: torch.",
    )
    parser.add_argument(
        "--cache-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="Storage type of the embedding cache (float32: the model's output exactly, a separate cache "
        "entry). Default: float16.",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"Embedding cache (default {DEFAULT_CACHE})."
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.data import load_dataset
    from latepool.evaluation.report import write_report
    from latepool.evaluation.sweep import SweepConfig, sweep_dataset
    from latepool.models import load_model, set_lengths

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name, value in (
        ("--batch-size", args.batch_size),
        ("--top-k", args.top_k),
        ("--query-length", args.query_length),
        ("--document-length", args.document_length),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    datasets = [load_dataset(source.strip(), split=args.split) for source in args.data.split(",") if source.strip()]
    model = load_model(args.model, device=args.device)
    set_lengths(model, args.query_length, args.document_length)
    config = SweepConfig(
        methods=args.methods,
        pool_factors=args.pool_factors,
        top_k=args.top_k,
        batch_size=args.batch_size,
        backend=args.backend,
        seed=args.seed,
        cache_dir=args.cache_dir,
        cache_dtype=args.cache_dtype,
    )
    started = time.perf_counter()
    cells = []
    for dataset in datasets:
        print(f"{dataset.name}: {len(dataset.corpus_ids)} documents, {len(dataset.query_ids)} queries ({args.split})")
        for cell in sweep_dataset(model, dataset, config, model_name=str(args.model)):
            cells.append(cell)
            print(
                f"  {cell.method:>12} PF{cell.pool_factor:<4g} ndcg@10 {cell.metrics['ndcg@10']:.4f}  "
                f"vectors {cell.vectors:>9}  pool {cell.pool_s:6.1f}s  search {cell.search_s:6.1f}s",
                flush=True,
            )
    settings = {
        key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items() if key != "run"
    }
    write_report(args.output, cells, settings | {"wall_s": round(time.perf_counter() - started, 2)})
    print(
        f"wrote {args.output}/results.csv, results.json, table.md, ndcg.png and runs/ "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return 0
