"""``latepool evaluate``: one checkpoint x datasets x pooling methods x pool factors, the paper's tables."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from latepool.commands.common import (
    add_cache_option,
    add_device_option,
    add_length_options,
    add_model_option,
    argument_type,
    parse_dtypes,
    parse_methods,
    parse_pool_factors,
)
from latepool.options import KMEANS_BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Evaluate a ColBERT over datasets x pooling methods x pool factors (NDCG@10, MRR@10, MAP@100, recall).",
        description="Encodes each corpus once (cached), then pools, scores (exact MaxSim) and measures every cell.",
    )
    add_model_option(parser)
    parser.add_argument("--data", required=True, help="Comma-separated BEIR directories, or nanobeir:NAME / beir:NAME.")
    parser.add_argument("--split", default="test", help="Qrels split to evaluate.")
    parser.add_argument(
        "--methods",
        default="kmeans,hierarchical,span",
        type=argument_type(parse_methods),
        help="Comma-separated pooling methods.",
    )
    parser.add_argument(
        "--pool-factors",
        default="1-6",
        type=argument_type(parse_pool_factors),
        help="Pool factors: a range '1-6' or a list '1,2,4'.",
    )
    add_length_options(parser, query_length=48, document_length=300)
    parser.add_argument("--batch-size", type=int, default=32, help="Encoding batch size.")
    add_device_option(parser)
    parser.add_argument(
        "--backend",
        choices=KMEANS_BACKENDS,
        default="torch",
        help="k-means backend: torch (batched) or sklearn (the paper's per-document reference; exact only "
        "with --cache-dtype float32).",
    )
    parser.add_argument(
        "--cache-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="Storage type of the embedding cache (float32: the model's output exactly, a separate cache entry).",
    )
    parser.add_argument(
        "--dtypes",
        default="float32",
        type=argument_type(parse_dtypes),
        help="Storage axis: comma-separated index storage types the pooled vectors are encoded and decoded "
        "with before scoring (float32, float16, int8, residual4, residual2, residual1).",
    )
    parser.add_argument("--seed", type=int, default=42, help="k-means seed.")
    parser.add_argument("--top-k", type=int, default=100, help="Documents kept per query (runs, metrics@100).")
    add_cache_option(parser, "encoded corpora")
    parser.add_argument("--output", type=Path, required=True, help="Directory of the results, runs and plot.")
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
        show_progress_bar=True,
        dtypes=args.dtypes,
    )
    started = time.perf_counter()
    cells = []
    for dataset in datasets:
        print(f"{dataset.name}: {len(dataset.corpus_ids)} documents, {len(dataset.query_ids)} queries ({args.split})")
        for cell in sweep_dataset(model, dataset, config, model_name=str(args.model)):
            cells.append(cell)
            print(
                f"  {cell.method:>12} PF{cell.pool_factor:<4g} {cell.dtype:>9} ndcg@10 {cell.metrics['ndcg@10']:.4f}  "
                f"vectors {cell.vectors:>9}  pool {cell.pool_s:6.1f}s  search {cell.search_s:6.1f}s",
                flush=True,
            )
    settings = {
        key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items() if key != "run"
    }
    write_report(args.output, cells, settings | {"wall_s": round(time.perf_counter() - started, 2)})
    print(
        f"wrote {args.output}/results.csv, results.json, table.md, ndcg.png, frontier.png and runs/ "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return 0
