"""``latepool mine``: hard and random negatives for the training queries of a BEIR collection."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mine", help="Mine hard and random negatives with a dense retriever.")
    parser.add_argument("--data", required=True, help="BEIR directory (or nanobeir:/beir: name).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--retriever", default="minilm", help="sentence-transformers bi-encoder, or 'minilm'.")
    parser.add_argument("--hard-negatives", type=int, default=100)
    parser.add_argument("--random-negatives", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--output", type=Path, required=True, help="Output directory (datasets save_to_disk).")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.data import load_dataset
    from latepool.training.datasets_io import save_rows
    from latepool.training.mining import load_retriever, mine_negatives

    dataset = load_dataset(args.data, split=args.split)
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
