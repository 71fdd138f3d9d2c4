"""``latepool train``: pooling-aware distillation of a ColBERT on teacher scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from latepool.commands.common import (
    add_cache_option,
    add_checkpoint_format_option,
    add_device_option,
    add_length_options,
    argument_type,
    parse_pool_factors,
)
from latepool.options import TRAIN_POOL_METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="Fine-tune a ColBERT with pooling inside the distillation loss.")
    parser.add_argument(
        "--model", required=True, help="ColBERT checkpoint, plain transformer (gets a new projection), or 'minilm'."
    )
    parser.add_argument("--scores", type=Path, required=True, help="Output of latepool score (or a parquet copy).")
    parser.add_argument("--data", required=True, help="BEIR collection with the queries and corpus the scores name.")
    parser.add_argument("--split", default="train", help="Qrels split of --data.")
    parser.add_argument("--output", type=Path, required=True, help="Model directory (checkpoints in OUT/checkpoints).")
    parser.add_argument(
        "--pool-method", choices=TRAIN_POOL_METHODS, default="kmeans", help="Pooling inside the loss ('none': off)."
    )
    parser.add_argument(
        "--pool-factors",
        type=argument_type(parse_pool_factors),
        default="1-6",
        help="Pool factors drawn uniformly per batch: a range '1-6' or a list '1,2,4'.",
    )
    parser.add_argument("--n-ways", type=int, default=16, help="Documents per query (1 positive + negatives).")
    parser.add_argument("--batch-size", type=int, default=16, help="Queries per step (per device).")
    parser.add_argument("--lr", type=float, default=1e-5, help="Learning rate.")
    parser.add_argument("--epochs", type=float, default=3, help="Training epochs.")
    parser.add_argument("--warmup-ratio", type=float, default=0.1, help="Share of the steps with a rising rate.")
    parser.add_argument("--max-steps", type=int, default=-1, help="Stop after this many steps (-1: run the epochs).")
    add_length_options(parser, query_length=48, document_length=300)
    parser.add_argument("--embedding-dim", type=int, default=64, help="Projection size for a model without one.")
    parser.add_argument(
        "--normalize-scores",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Min-max normalize the student's MaxSim scores per query before the softmax.",
    )
    parser.add_argument(
        "--teacher-temperature",
        type=float,
        default=1.0,
        help="Softmax temperature of the teacher scores (lower sharpens; e.g. 0.05 for cosines).",
    )
    parser.add_argument(
        "--train-layers",
        type=int,
        default=None,
        metavar="K",
        help="Train only the top K encoder layers (0: the projection only) on hidden states cached once "
        "under --cache-dir. Default: full fine-tuning.",
    )
    add_cache_option(parser, "the frozen encoder's states (--train-layers)")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the projection, data order and pooling.")
    parser.add_argument("--save-steps", type=int, default=50, help="Steps between checkpoints.")
    parser.add_argument("--save-total-limit", type=int, default=2, help="Checkpoints kept in OUT/checkpoints.")
    parser.add_argument("--logging-steps", type=int, default=10, help="Steps between logged losses.")
    parser.add_argument(
        "--report-to",
        default="none",
        help="Where the trainer logs: none, tensorboard, wandb, ... (comma-separated, as transformers takes it).",
    )
    parser.add_argument("--eval-data", default=None, help="BEIR dev collection evaluated after each epoch.")
    parser.add_argument("--eval-split", default="dev", help="Qrels split of --eval-data.")
    parser.add_argument("--eval-pool-factor", type=float, default=4, help="Pool factor of the dev evaluation.")
    add_device_option(parser)
    add_checkpoint_format_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.extras import require

    require("train", "latepool train")
    from transformers import set_seed

    from latepool.data import load_dataset
    from latepool.models import load_student
    from latepool.training.datasets_io import load_table
    from latepool.training.examples import build_examples
    from latepool.training.run import TrainConfig, train

    set_seed(args.seed)
    dataset = load_dataset(args.data, split=args.split)
    examples = build_examples(load_table(args.scores), dataset, n_ways=args.n_ways)
    if examples.skipped:
        print(f"skipped: {dict(examples.skipped)}")
    print(f"{len(examples)} training examples of {args.n_ways} documents")
    dev = load_dataset(args.eval_data, split=args.eval_split) if args.eval_data else None
    model = load_student(
        args.model,
        embedding_dim=args.embedding_dim,
        query_length=args.query_length,
        document_length=args.document_length,
        seed=args.seed,
        device=args.device,
    )
    config = TrainConfig(
        pool_method=args.pool_method,
        pool_factors=args.pool_factors,
        n_ways=args.n_ways,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        epochs=args.epochs,
        warmup_ratio=args.warmup_ratio,
        max_steps=args.max_steps,
        normalize_scores=args.normalize_scores,
        seed=args.seed,
        save_steps=args.save_steps,
        eval_pool_factor=args.eval_pool_factor,
        teacher_temperature=args.teacher_temperature,
        train_layers=args.train_layers,
        cache_dir=args.cache_dir,
        checkpoint_format=args.checkpoint_format,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        report_to=args.report_to,
    )
    card = {
        "base_model": args.model,
        "data": f"{args.data} ({args.split})",
        "scores": str(args.scores),
        "teacher": _teacher_of(args.scores),
    }
    record = train(model, examples, args.output, config, dev=dev, card=card)
    print(f"trained {record['global_step']} steps (loss {record['training_loss']:.4f}) -> {args.output}")
    return 0


def _teacher_of(scores: Path) -> str:
    """The teacher named in a scores directory's provenance file, if latepool score wrote one."""
    provenance = Path(scores) / "latepool_scores.json"
    if provenance.is_file():
        import json

        return json.loads(provenance.read_text(encoding="utf-8")).get("teacher", "unknown")
    return "unknown"
