"""Sweep outputs: results.csv / results.json, TREC run files, the paper-style table.md, ndcg.png and frontier.png."""

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
    "dtype",
    *METRICS,
    "vectors",
    "bytes_float16",
    "bytes_per_document",
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
    dtypes = ", ".join(dict.fromkeys(cell.dtype for cell in cells))
    lines = [
        f"{metric.upper()} of each pooling method (columns) at each pool factor (PF), vectors stored as {dtypes}; "
        "the last column is the share of token vectors pooling removed.",
        "",
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


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (fewer bytes and at least the same score), by bytes.

    Example::

        >>> pareto_front([(100, 0.6), (50, 0.55), (60, 0.5), (200, 0.6), (20, 0.3)])
        [(20, 0.3), (50, 0.55), (100, 0.6)]
    """
    front: list[tuple[float, float]] = []
    for size, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or score > front[-1][1]:
            front.append((size, score))
    return front


def plot_frontier(path: Path, cells: list[CellResult], metric: str = "ndcg@10") -> None:
    """NDCG@10 against bytes per document for every (method, pool factor, dtype) cell, Pareto front drawn.

    Colour: method; marker: dtype; the number beside a point: its pool factor. At pool factor 1
    nothing is pooled, so every method gives the same point: it is drawn once, in grey.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(cell.dataset for cell in cells))
    methods = list(dict.fromkeys(cell.method for cell in cells))
    dtypes = list(dict.fromkeys(cell.dtype for cell in cells))
    markers = dict(zip(dtypes, "os^vDPX*"))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        mine = [cell for cell in cells if cell.dataset == dataset]
        for dtype in dtypes:
            unpooled = [c for c in mine if c.pool_factor == 1 and c.dtype == dtype][:1]
            axis.scatter(
                [c.bytes_per_document for c in unpooled],
                [c.metrics[metric] for c in unpooled],
                color="grey",
                marker=markers[dtype],
                s=30,
                label=f"unpooled (PF 1) {dtype}",
            )
        for number, method in enumerate(methods):
            for dtype in dtypes:
                chosen = [c for c in mine if c.method == method and c.dtype == dtype and c.pool_factor != 1]
                axis.scatter(
                    [c.bytes_per_document for c in chosen],
                    [c.metrics[metric] for c in chosen],
                    color=f"C{number}",
                    marker=markers[dtype],
                    s=22,
                    label=f"{method} {dtype}",
                )
                for cell in chosen:
                    axis.annotate(
                        f"{cell.pool_factor:g}",
                        (cell.bytes_per_document, cell.metrics[metric]),
                        fontsize=6,
                        xytext=(3, 2),
                        textcoords="offset points",
                    )
        front = pareto_front([(c.bytes_per_document, c.metrics[metric]) for c in mine])
        axis.plot([p[0] for p in front], [p[1] for p in front], color="black", linewidth=1.2, label="Pareto front")
        axis.set_xscale("log")
        axis.set_title(dataset)
        axis.set_xlabel("bytes per document")
        axis.set_ylabel(metric.upper())
        axis.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=6, ncol=2)
    figure.text(0.01, 0.01, "The number beside a point is its pool factor.", fontsize=7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(output: Path, cells: list[CellResult], config: dict[str, Any]) -> None:
    """Write every output of a sweep into ``output`` (created if needed).

    ``table.md`` and ``ndcg.png`` show the first storage type of the sweep (the paper's view);
    ``frontier.png`` shows every cell.
    """
    output.mkdir(parents=True, exist_ok=True)
    (output / "runs").mkdir(exist_ok=True)
    for cell in cells:
        storage = "" if cell.dtype == "float32" else f".{cell.dtype}"
        name = f"{cell.dataset}.{cell.method}.pf{cell.pool_factor:g}{storage}"
        write_trec_run(output / "runs" / f"{name}.trec", cell.run, f"latepool.{cell.method}.pf{cell.pool_factor:g}")
    write_csv(output / "results.csv", cells)
    payload = {
        "config": config,
        "versions": versions(),
        "results": [{k: _round(v) for k, v in c.row().items()} for c in cells],
    }
    (output / "results.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    first = [cell for cell in cells if cell.dtype == cells[0].dtype] if cells else cells
    (output / "table.md").write_text(markdown_table(first), encoding="utf-8")
    plot_ndcg(output / "ndcg.png", first)
    plot_frontier(output / "frontier.png", cells)
