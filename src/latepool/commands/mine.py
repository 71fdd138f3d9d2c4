"""``latepool mine``: hard and random negatives for the training queries of a BEIR collection."""

from __future__ import annotations

import argparse
from pathlib import Path

from latepool.commands.common import add_device_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mine", help="Mine hard and random negatives with a dense retriever.")
    parser.add_argument("--data", required=True, help="BEIR directory (or nanobeir:/beir: name).")
    parser.add_argument("--split", default="train", help="Qrels split whose queries are mined.")
    parser.add_argument(
        "--max-queries", type=int, default=None, help="Only the first N queries (a quick run; default: all)."
    )
    parser.add_argument(
        "--max-documents",
        type=int,
        default=None,
        help="Only the queries' judged documents plus the corpus's first ones, N in all (default: all).",
    )
    parser.add_argument("--retriever", default="minilm", help="sentence-transformers bi-encoder, or 'minilm'.")
    parser.add_argument("--hard-negatives", type=int, default=100, help="Top-ranked non-positives kept per query.")
    parser.add_argument("--random-negatives", type=int, default=50, help="Random documents added per query.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the random negatives.")
    parser.add_argument("--batch-size", type=int, default=64, help="Encoding batch size.")
    add_device_option(parser)
    parser.add_argument("--output", type=Path, required=True, help="Output directory (datasets save_to_disk).")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.data import load_dataset
    from latepool.training.datasets_io import save_rows
    from latepool.training.mining import load_retriever, mine_negatives

    dataset = load_dataset(args.data, split=args.split).subset(args.max_queries, args.max_documents)
    mined = mine_negatives(
        dataset,
        load_retriever(args.retriever, device=args.device),
        hard_negatives=args.hard_negatives,
        random_negatives=args.random_negatives,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    save_rows(mined, args.output)
    skipped = len(dataset.query_ids) - len(mined)
    print(f"mined {len(mined)} queries ({skipped} without a positive skipped) -> {args.output}")
    return 0
