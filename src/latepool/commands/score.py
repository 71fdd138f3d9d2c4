"""``latepool score``: teacher scores for mined candidates and the paper's candidate selection."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from latepool.commands.common import add_device_option
from latepool.options import TEACHER_TYPES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("score", help="Score mined candidates with a teacher and select 1 + 15 per query.")
    parser.add_argument("--mined", type=Path, required=True, help="Output of latepool mine.")
    parser.add_argument("--data", required=True, help="The BEIR collection that was mined.")
    parser.add_argument("--split", default="train", help="Qrels split that was mined.")
    parser.add_argument(
        "--max-queries", type=int, default=None, help="Only the mined rows of the first N queries (default: all)."
    )
    parser.add_argument(
        "--teacher", required=True, help="Cross-encoder, LLM reranker, bi-encoder, ColBERT, or 'minilm'."
    )
    parser.add_argument("--teacher-type", choices=TEACHER_TYPES, default=None, help="Override the detected kind.")
    parser.add_argument("--hard", type=int, default=5, help="Hardest negatives kept (highest teacher scores).")
    parser.add_argument("--medium", type=int, default=5, help="Negatives kept from the middle of the ranking.")
    parser.add_argument("--random", type=int, default=5, help="Random negatives kept.")
    parser.add_argument(
        "--false-negative-ratio",
        type=float,
        default=0.95,
        help="Drop negatives scoring above this times the median positive score.",
    )
    parser.add_argument("--keep-false-negatives", action="store_true", help="Do not apply that filter.")
    add_device_option(parser)
    parser.add_argument("--output", type=Path, required=True, help="Output directory (resumable shards first).")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.data import load_dataset
    from latepool.training.datasets_io import load_mined, save_rows
    from latepool.training.teacher_scores import Selection, score_mined
    from latepool.training.teachers import detect_teacher_type, load_teacher

    dataset = load_dataset(args.data, split=args.split).subset(args.max_queries)
    mined = [row for row in load_mined(args.mined) if row.query_id in dataset.qrels]
    kind = args.teacher_type or detect_teacher_type(args.teacher)
    teacher = load_teacher(args.teacher, kind, device=args.device)
    ratio = None if args.keep_false_negatives else args.false_negative_ratio
    selection = Selection(hard=args.hard, medium=args.medium, random=args.random, false_negative_ratio=ratio)
    rows = score_mined(mined, dataset, teacher.score, args.output, selection)
    save_rows(rows, args.output)
    provenance = {"teacher": args.teacher, "teacher_type": kind, "mined": str(args.mined), "data": args.data}
    (args.output / "latepool_scores.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    shutil.rmtree(args.output.with_name(args.output.name + ".partial"), ignore_errors=True)  # saved: shards done
    sizes = sorted({len(r.document_ids) for r in rows})
    print(
        f"scored {len(rows)} queries with {kind} teacher {args.teacher}; documents per query {sizes} -> {args.output}"
    )
    return 0
