"""``latepool evaluate`` end to end on a tiny model and a BEIR fixture: outputs, PF1 = unpooled, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from latepool.cli import main
from latepool.commands.common import parse_dtypes, parse_pool_factors
from latepool.data import load_beir
from latepool.evaluation.report import CSV_COLUMNS
from latepool.evaluation.sweep import SweepConfig, evaluate_documents, sweep_dataset
from latepool.models import load_model, set_lengths


def run_cli(*args: str) -> int:
    return main(["evaluate", *args])


@pytest.fixture
def evaluated(tiny_pylate_dir: Path, beir_dir: Path, tmp_path: Path) -> Path:
    output = tmp_path / "out"
    status = run_cli(
        "--model",
        str(tiny_pylate_dir),
        "--data",
        f"{beir_dir},{beir_dir}",
        "--methods",
        "kmeans,span",
        "--pool-factors",
        "1-3",
        "--query-length",
        "12",
        "--document-length",
        "64",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(output),
    )
    assert status == 0
    return output


def test_outputs_schema(evaluated: Path) -> None:
    with (evaluated / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2 * 2 * 3  # datasets x methods x pool factors
    assert {(r["method"], r["pool_factor"]) for r in rows} == {
        (m, str(p)) for m in ("kmeans", "span") for p in (1, 2, 3)
    }
    for row in rows:
        assert 0 <= float(row["ndcg@10"]) <= 1 and int(row["bytes_float16"]) == int(row["vectors"]) * 16 * 2
    payload = json.loads((evaluated / "results.json").read_text())
    assert payload["config"]["pool_factors"] == [1, 2, 3] and "torch" in payload["versions"]
    assert len(payload["results"]) == 12
    runs = sorted(p.name for p in (evaluated / "runs").iterdir())
    assert "fixture.kmeans.pf2.trec" in runs and len(runs) == 6  # same dataset name twice: same files
    line = (evaluated / "runs" / "fixture.span.pf3.trec").read_text().splitlines()[0].split()
    assert line[1] == "Q0" and line[3] == "1" and line[5] == "latepool.span.pf3"
    table = (evaluated / "table.md").read_text()
    assert "| Dataset | PF | kmeans | span | mean vector reduction |" in table
    assert (evaluated / "ndcg.png").read_bytes()[:4] == b"\x89PNG"


def test_pool_factor_one_equals_unpooled_evaluation(tiny_pylate_dir: Path, beir_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_pylate_dir), device="cpu")
    set_lengths(model, 12, 64)
    dataset = load_beir(beir_dir, "test")
    cells = list(
        sweep_dataset(
            model, dataset, SweepConfig(methods=["kmeans", "hierarchical"], pool_factors=[1, 2], cache_dir=tmp_path)
        )
    )
    unpooled = evaluate_documents(
        dataset, model.encode_query(dataset.query_texts), model.encode_document(dataset.corpus_texts), 100
    )
    for cell in (c for c in cells if c.pool_factor == 1):
        assert cell.metrics == pytest.approx(unpooled.metrics, abs=1e-6)
        assert cell.vectors == unpooled.vectors
    pooled = [c for c in cells if c.pool_factor == 2]
    assert all(c.vectors < unpooled.vectors for c in pooled)


def test_bad_arguments_exit_with_a_message(tiny_pylate_dir: Path, tmp_path: Path, capsys) -> None:
    assert (
        run_cli("--model", str(tiny_pylate_dir), "--data", str(tmp_path / "missing"), "--output", str(tmp_path / "o"))
        == 2
    )
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("--model", "m", "--data", "d", "--output", "o", "--pool-factors", "0-2")
    with pytest.raises(SystemExit):
        run_cli("--model", "m", "--data", "d", "--output", "o", "--methods", "kmeans,median")
    assert parse_pool_factors("1-3,4.5") == [1, 2, 3, 4.5]


def test_version_and_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "latepool" in capsys.readouterr().out
    assert main([]) == 0
    assert "evaluate" in capsys.readouterr().out


def test_float32_cache_makes_the_sklearn_backend_the_plain_reference_loop(
    tiny_pylate_dir: Path, beir_dir: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from sklearn.cluster import KMeans

    from latepool.evaluation.sweep import encode_dataset
    from latepool.pooling import pool_corpus
    from latepool.pooling.kmeans import max_iterations

    model = load_model(str(tiny_pylate_dir), device="cpu")
    dataset = load_beir(beir_dir, "test")
    exact = [e.float() for e in model.encode_document(dataset.corpus_texts, convert_to_numpy=False)]
    half, _ = encode_dataset(model, dataset, tmp_path / "cache", cache_dtype="float16")
    full, _ = encode_dataset(model, dataset, tmp_path / "cache", cache_dtype="float32")
    assert len(list((tmp_path / "cache").glob("document-*"))) == 2  # kept apart
    assert all(torch.equal(a, b) for a, b in zip(full, exact))
    assert not all(torch.equal(a, b) for a, b in zip(half, exact))

    for pool_factor in (2, 3):
        pooled = pool_corpus(full, "kmeans", pool_factor, backend="sklearn", seed=42, show_progress_bar=False)
        for document, output in zip(full, pooled):
            points = document[1:].numpy()
            clusters = max(len(points) // pool_factor, 1)
            if clusters >= len(points):
                expected = document
            else:
                reference = KMeans(
                    n_clusters=clusters, random_state=42, tol=1e-4, max_iter=max_iterations(len(points), clusters)
                )
                labels = reference.fit_predict(points)
                means = [points[labels == c].mean(axis=0) for c in range(clusters) if (labels == c).any()]
                expected = torch.from_numpy(np.stack([document[0].numpy(), *means]))
            assert output.shape == expected.shape
            assert torch.allclose(output, expected, atol=1e-6)  # same labels: the same means in label order


def test_storage_axis_adds_cells_bytes_and_the_frontier(tiny_pylate_dir: Path, beir_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    arguments = ["--model", str(tiny_pylate_dir), "--data", str(beir_dir), "--methods", "kmeans"]
    arguments += ["--pool-factors", "1,2", "--dtypes", "float32,float16,int8,residual2,residual1"]
    arguments += ["--query-length", "12", "--document-length", "64", "--device", "cpu"]
    assert run_cli(*arguments, "--cache-dir", str(tmp_path / "cache"), "--output", str(output)) == 0
    with (output / "results.csv").open() as handle:
        rows = {(r["pool_factor"], r["dtype"]): r for r in csv.DictReader(handle)}
    assert len(rows) == 2 * 5
    for pool_factor in ("1", "2"):
        cells = {
            dtype: rows[(pool_factor, dtype)] for dtype in ("float32", "float16", "int8", "residual2", "residual1")
        }
        per_document = {d: float(r["bytes_per_document"]) for d, r in cells.items()}
        vectors_per_document = int(cells["float32"]["vectors"]) / 12
        assert per_document["float32"] == pytest.approx(vectors_per_document * 16 * 4)
        assert per_document["float16"] == pytest.approx(vectors_per_document * (16 * 2 + 6))  # + list bookkeeping
        assert per_document["float32"] > per_document["float16"] > per_document["int8"]
        assert per_document["int8"] > per_document["residual2"] > per_document["residual1"]
        assert float(cells["float16"]["ndcg@10"]) == pytest.approx(float(cells["float32"]["ndcg@10"]), abs=0.02)
    assert (output / "runs" / "fixture.kmeans.pf2.residual2.trec").is_file()
    assert (output / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert "| fixture | 2 |" in (output / "table.md").read_text()  # the first dtype's view
    with pytest.raises(ValueError, match="--dtypes"):
        parse_dtypes("float16,bfloat3")
