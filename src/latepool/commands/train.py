"""``latepool train``: pooling-aware distillation of a ColBERT on teacher scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from latepool.checkpoints import CHECKPOINT_FORMATS
from latepool.commands.evaluate import parse_pool_factors
from latepool.training.loss import TRAIN_POOL_METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="Fine-tune a ColBERT with pooling inside the distillation loss.")
    parser.add_argument("--model", required=True, help="ColBERT checkpoint, plain transformer, or 'minilm'.")
    parser.add_argument("--scores", type=Path, required=True, help="Output of latepool score (or parquet copy).")
    parser.add_argument("--data", required=True, help="BEIR collection with the queries and corpus.")
    parser.add_argument("--split", default="train")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--pool-method", choices=TRAIN_POOL_METHODS, default="kmeans")
    parser.add_argument("--pool-factors", type=parse_pool_factors, default="1-6")
    parser.add_argument("--n-ways", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--query-length", type=int, default=48)
    parser.add_argument("--document-length", type=int, default=300)
    parser.add_argument("--embedding-dim", type=int, default=64, help="Projection size for a model without one.")
    parser.add_argument("--normalize-scores", action=argparse.BooleanOptionalAction, default=True)
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
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/latepool"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--save-steps", type=int, default=50)
    parser.add_argument("--eval-data", default=None, help="BEIR dev collection evaluated after each epoch.")
    parser.add_argument("--eval-split", default="dev")
    parser.add_argument("--eval-pool-factor", type=float, default=4)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--checkpoint-format",
        choices=CHECKPOINT_FORMATS,
        default="pylate",
        help="Layout of the model and its checkpoints: pylate (loads in PyLate 1.6 and sentence-transformers "
        ">= 6.2) or sentence-transformers. Default: pylate.",
    )
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
