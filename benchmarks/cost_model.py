"""A per-query cost model of the default search, fitted on ``search_scale.py`` runs, projected to larger indexes.

``search_scale.py`` prints one JSON row per index it measures, with ``profile``: the medians of a default
single-query search's time in its three stages and what each stage reads. This script reads those rows
(from one or more saved outputs of the standard proxy), fits each stage on what drives it, and projects
the stages to the sizes given:

- centroids: the query tokens against every centroid (a ``(T, C)`` product, then each token's best
  lists): milliseconds per thousand centroids, fitted through the origin;
- probe: the probe kernel over the probed lists, on the segment threads: milliseconds per million
  rows scored, plus a constant;
- exact: reading, decoding and scoring the rescored documents: milliseconds per document rescored.

Rows scored per query are ``rows_factor * vectors * nprobe / centroids`` (the probed lists' share of
the index, times the query's distinct tokens): ``rows_factor`` is fitted too. Centroids and ``nprobe``
follow the index's default rules (:func:`~latepool.index.codec.default_num_centroids`,
:func:`~latepool.index.index.default_search`); documents rescored follow the largest measured index.

    python benchmarks/search_scale.py --sizes 100000,1000000 --keep DIR > scale.log
    python benchmarks/cost_model.py scale.log --project 10000000,30000000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from latepool.index.codec import default_num_centroids
from latepool.index.index import default_search


def measured_rows(paths: list[Path]) -> list[dict]:
    """The standard proxy's measured rows (those with a ``profile``) in the given outputs, one per size."""
    rows = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.startswith("{") and '"profile"' in line:
                row = json.loads(line)
                if row.get("proxy", "standard") == "standard":
                    rows[row["size"]] = row
    return [rows[size] for size in sorted(rows)]


def fit(rows: list[dict]) -> dict[str, float]:
    """The model's coefficients, least squares over the measured sizes."""
    centroids = np.array([r["centroids"] for r in rows], dtype=float)
    profile = [r["profile"] for r in rows]
    scored = np.array([p["rows"] for p in profile], dtype=float)
    nprobe = np.array([default_search(int(c), r["documents"]).nprobe for c, r in zip(centroids, rows)], dtype=float)
    vectors = np.array([r["vectors"] for r in rows], dtype=float)
    probe_ms = np.array([p["probe_ms"] for p in profile])
    design = np.stack([np.ones_like(scored), scored / 1e6], axis=1)
    probe_constant, probe_per_million = np.linalg.lstsq(design, probe_ms, rcond=None)[0]
    centroid_ms = np.array([p["centroids_ms"] for p in profile])
    return {
        "centroids_ms_per_thousand": float((centroid_ms * centroids).sum() / (centroids**2).sum() * 1000),
        "probe_ms": float(probe_constant),
        "probe_ms_per_million_rows": float(probe_per_million),
        "exact_ms_per_document": float(
            sum(p["exact_ms"] for p in profile) / max(sum(p["rescored"] for p in profile), 1)
        ),
        "rows_factor": float(np.mean(scored / (vectors * nprobe / centroids))),
        "rescored": float(profile[-1]["rescored"]),
        "vectors_per_document": float(vectors[-1] / rows[-1]["documents"]),
    }


def project(model: dict[str, float], documents: int) -> dict[str, float]:
    """The model's stage times (ms) and rows scored for an index of ``documents`` like the measured ones."""
    vectors = documents * model["vectors_per_document"]
    centroids = default_num_centroids(int(vectors))
    nprobe = default_search(centroids, documents).nprobe
    rows = model["rows_factor"] * vectors * nprobe / centroids
    stages = {
        "centroids_ms": model["centroids_ms_per_thousand"] * centroids / 1000,
        "probe_ms": model["probe_ms"] + model["probe_ms_per_million_rows"] * rows / 1e6,
        "exact_ms": model["exact_ms_per_document"] * model["rescored"],
    }
    return {"centroids": centroids, "nprobe": nprobe, "rows": rows, **stages, "total_ms": sum(stages.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", nargs="+", type=Path, help="Saved outputs of search_scale.py.")
    parser.add_argument("--project", default="10000000,30000000", help="Sizes (documents) to project to.")
    args = parser.parse_args()
    rows = measured_rows(args.outputs)
    if len(rows) < 2:
        parser.error("the model needs the standard proxy measured at two sizes at least")
    model = fit(rows)
    print(json.dumps(model))
    fitted_on = ", ".join(f"{r['documents']:,}" for r in rows)
    print(
        f"fitted on {fitted_on} documents: centroids "
        f"{model['centroids_ms_per_thousand']:.3f} ms per 1,000 | probe {model['probe_ms']:.1f} ms + "
        f"{model['probe_ms_per_million_rows']:.1f} ms per million rows | exact "
        f"{model['exact_ms_per_document'] * 1000:.1f} us per document rescored | rows = "
        f"{model['rows_factor']:.1f} x vectors x nprobe / centroids"
    )
    sizes = [r["documents"] for r in rows] + [int(s) for s in args.project.split(",") if s]
    for documents in sizes:
        measured = next((r["profile"] for r in rows if r["documents"] == documents), None)
        point = project(model, documents)
        print(
            f"{documents:>11,} docs | {point['centroids']:,} centroids, nprobe {point['nprobe']} | "
            f"{point['rows'] / 1e6:.1f}M rows | centroids {point['centroids_ms']:.1f} + probe {point['probe_ms']:.1f} "
            f"+ exact {point['exact_ms']:.1f} = {point['total_ms']:.1f} ms"
            + (
                f" (measured {measured['total_ms']:.1f} ms, {measured['rows'] / 1e6:.1f}M rows)"
                if measured
                else " (projected)"
            )
        )


if __name__ == "__main__":
    main()
