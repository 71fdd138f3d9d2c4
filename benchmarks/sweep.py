"""The evaluation sweep on real data: the full 3 x 6 table and its cost against one unpooled evaluation.

Runs, in one process and each with an empty embedding cache: (A) one unpooled evaluation
(encode corpus and queries, exact MaxSim, metrics) and (B) the whole sweep, kmeans / hierarchical /
span at pool factors 1-6. Prints the NDCG@10 table, the wall-time ratio B / A (the reference code
re-encodes for every cell, about 18x) and B's time split.

    python benchmarks/sweep.py --data ../shared/data/scifact [--output sweep-out]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from latepool.data import load_dataset
from latepool.evaluation.report import markdown_table, write_report
from latepool.evaluation.sweep import SweepConfig, sweep_dataset
from latepool.models import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


def timed_sweep(model, dataset, config: SweepConfig) -> tuple[list, float]:
    started = time.perf_counter()
    cells = list(sweep_dataset(model, dataset, config, model_name="minilm"))
    return cells, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", type=Path, default=None, help="also write the sweep's report here")
    args = parser.parse_args()

    dataset = load_dataset(args.data, split=args.split)
    model = load_model("minilm", device="cpu")
    print(f"{dataset.name} {args.split}: {len(dataset.corpus_ids)} documents, {len(dataset.query_ids)} queries")
    with tempfile.TemporaryDirectory() as cache_a, tempfile.TemporaryDirectory() as cache_b:
        unpooled, unpooled_s = timed_sweep(
            model, dataset, SweepConfig(methods=["kmeans"], pool_factors=[1], cache_dir=Path(cache_a))
        )
        cells, sweep_s = timed_sweep(model, dataset, SweepConfig(cache_dir=Path(cache_b)))
    print(markdown_table(cells))
    pool_s, search_s = (
        defaultdict(float),
        sum(cell.search_s for cell in cells if cell.pool_factor != 1 or cell.method == cells[0].method),
    )
    for cell in cells:
        pool_s[cell.method] += cell.pool_s
    print(
        f"one unpooled evaluation: {unpooled_s:.1f} s "
        f"(encode {unpooled[0].encode_s:.1f} s, search {unpooled[0].search_s:.1f} s), "
        f"ndcg@10 {unpooled[0].metrics['ndcg@10']:.4f}"
    )
    print(f"whole sweep ({len(cells)} cells): {sweep_s:.1f} s = {sweep_s / unpooled_s:.2f}x one unpooled evaluation")
    print(
        f"sweep time split: encode {cells[0].encode_s:.1f} s, "
        + ", ".join(f"pool {method} {seconds:.1f} s" for method, seconds in pool_s.items())
        + f", search {search_s:.1f} s (all cells)"
    )
    if args.output:
        write_report(args.output, cells, {"data": str(args.data), "split": args.split, "model": "minilm"})


if __name__ == "__main__":
    main()
