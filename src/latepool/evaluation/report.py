"""Sweep outputs: results.csv / results.json, TREC run files, the paper-style table.md and ndcg.png."""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Any

from latepool.evaluation.metrics import METRICS, ranked
from latepool.evaluation.sweep import CellResult

CSV_COLUMNS = [
    "dataset",
    "method",
    "pool_factor",
    *METRICS,
    "vectors",
    "bytes_float16",
    "encode_s",
    "pool_s",
    "search_s",
]


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide the numbers."""
    import sentence_transformers
    import torch
    import transformers

    import latepool

    return {
        "latepool": latepool.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_trec_run(path: Path, run: dict[str, dict[str, float]], tag: str) -> None:
    """Write a standard TREC run file: ``qid Q0 docid rank score tag``, best first."""
    with path.open("w", encoding="utf-8") as handle:
        for query_id, scores in run.items():
            for rank, doc_id in enumerate(ranked(scores), start=1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {scores[doc_id]:.6f} {tag}\n")


def write_csv(path: Path, cells: list[CellResult]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for cell in cells:
            writer.writerow({key: _round(value) for key, value in cell.row().items()})


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def markdown_table(cells: list[CellResult], metric: str = "ndcg@10") -> str:
    """The paper's layout: a row per (dataset, pool factor), a column per method, plus the vector reduction.

    The reduction is ``1 - vectors / unpooled vectors``, averaged over the methods.
    """
    methods = list(dict.fromkeys(cell.method for cell in cells))
    lines = [
        f"| Dataset | PF | {' | '.join(methods)} | mean vector reduction |",
        "|---|---|" + "---|" * (len(methods) + 1),
    ]
    for dataset in dict.fromkeys(cell.dataset for cell in cells):
        in_dataset = [cell for cell in cells if cell.dataset == dataset]
        unpooled = next((cell.vectors for cell in in_dataset if cell.pool_factor == 1), None)
        for pool_factor in sorted({cell.pool_factor for cell in in_dataset}):
            by_method = {cell.method: cell for cell in in_dataset if cell.pool_factor == pool_factor}
            values = [f"{by_method[m].metrics[metric]:.3f}" if m in by_method else "" for m in methods]
            reductions = [1 - cell.vectors / unpooled for cell in by_method.values()] if unpooled else []
            reduction = f"{100 * sum(reductions) / len(reductions):.1f}%" if reductions else ""
            lines.append(f"| {dataset} | {pool_factor:g} | {' | '.join(values)} | {reduction} |")
    return "\n".join(lines) + "\n"


def plot_ndcg(path: Path, cells: list[CellResult], metric: str = "ndcg@10") -> None:
    """NDCG@10 against pool factor: one panel per dataset, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(cell.dataset for cell in cells))
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for method in dict.fromkeys(cell.method for cell in cells):
            points = sorted(
                (c.pool_factor, c.metrics[metric]) for c in cells if c.dataset == dataset and c.method == method
            )
            axis.plot([p for p, _ in points], [v for _, v in points], marker="o", label=method)
        axis.set_title(dataset)
        axis.set_xlabel("pool factor")
        axis.set_ylabel(metric.upper().replace("@", "@"))
        axis.grid(alpha=0.3)
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(output: Path, cells: list[CellResult], config: dict[str, Any]) -> None:
    """Write every output of a sweep into ``output`` (created if needed)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "runs").mkdir(exist_ok=True)
    for cell in cells:
        tag = f"latepool.{cell.method}.pf{cell.pool_factor:g}"
        write_trec_run(output / "runs" / f"{cell.dataset}.{cell.method}.pf{cell.pool_factor:g}.trec", cell.run, tag)
    write_csv(output / "results.csv", cells)
    payload = {
        "config": config,
        "versions": versions(),
        "results": [{k: _round(v) for k, v in c.row().items()} for c in cells],
    }
    (output / "results.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    (output / "table.md").write_text(markdown_table(cells), encoding="utf-8")
    plot_ndcg(output / "ndcg.png", cells)
