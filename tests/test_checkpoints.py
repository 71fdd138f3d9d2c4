"""Checkpoints PyLate loads: checked against a real PyLate 1.6 in its own virtualenv.

PyLate 1.6 needs sentence-transformers 5.3 and transformers 5.3, so it cannot share latepool's
environment. The ``pylate_python`` fixture builds that virtualenv once (CPU torch pinned, so no
CUDA build is pulled) under ``~/.cache/latepool/pylate-1.6.0-venv``, or uses the interpreter named
by ``LATEPOOL_PYLATE_PYTHON``. Building it needs the package index; a failed build fails the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import MultiVectorEncoder

from latepool.checkpoints import save_checkpoint, save_pylate
from latepool.cli import main
from latepool.models import build_colbert
from latepool.pooling import KMeansTokenPooling

PYLATE_REQUIREMENTS = [
    ["torch==2.13.0"],
    ["sentence-transformers==5.3.0", "transformers==5.3.0", "datasets", "accelerate", "pandas", "ujson"],
    ["--no-deps", "pylate==1.6.0", "fastkmeans==0.5.0"],
]
REFERENCE_SCRIPT = Path(__file__).with_name("pylate_reference.py")
TEXTS = {
    "queries": ["what evidence supports the claim?", "cancer risk gene", "blood levels in mice"],
    "documents": [
        "the protein expression, was increased in human cells after treatment.",
        "blood levels of the gene were lower in patients with disease; a study of mice!",
        " ".join(["cell protein, gene"] * 40),  # longer than the document length: truncated
    ],
}


@pytest.fixture(scope="session")
def pylate_python() -> str:
    """A Python interpreter with PyLate 1.6, sentence-transformers 5.3 and transformers 5.3."""
    if os.environ.get("LATEPOOL_PYLATE_PYTHON"):
        return os.environ["LATEPOOL_PYLATE_PYTHON"]
    venv = Path.home() / ".cache" / "latepool" / "pylate-1.6.0-venv"
    python = venv / "bin" / "python"
    ready = venv / "latepool-ready"
    if not ready.is_file():
        shutil.rmtree(venv, ignore_errors=True)  # a half-built environment from an interrupted run
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for requirements in PYLATE_REQUIREMENTS:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
        ready.write_text("\n".join(" ".join(r) for r in PYLATE_REQUIREMENTS), encoding="utf-8")
    return str(python)


def pylate_encode(python: str, tmp_path: Path, checkpoints: list[Path], resave: bool = False) -> list[dict]:
    """PyLate's query and document embeddings for each checkpoint (one PyLate process for all)."""
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(TEXTS), encoding="utf-8")
    jobs = []
    for number, checkpoint in enumerate(checkpoints):
        job = f"{checkpoint}={tmp_path / f'pylate-{number}.npz'}"
        jobs.append(job + (f"={tmp_path / f'pylate-saved-{number}'}" if resave else ""))
    subprocess.run([python, str(REFERENCE_SCRIPT), str(texts), *jobs], check=True, capture_output=True)
    return [dict(np.load(tmp_path / f"pylate-{number}.npz")) for number in range(len(checkpoints))]


def assert_same_embeddings(model: MultiVectorEncoder, reference: dict) -> None:
    """Query and document embeddings of ``model`` equal PyLate's within 1e-5, shape for shape."""
    queries = model.encode_query(TEXTS["queries"], convert_to_numpy=True)
    documents = model.encode_document(TEXTS["documents"], convert_to_numpy=True)
    for kind, embeddings in (("query", queries), ("document", documents)):
        for number, embedding in enumerate(embeddings):
            expected = reference[f"{kind}_{number}"]
            assert embedding.shape == expected.shape, (kind, number)
            assert np.abs(embedding - expected).max() <= 1e-5, (kind, number)


LABELS = ["positive", "hard_negative", "random_negative"]


def write_train_inputs(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"query_id": q, "document_ids": ids, "scores": [3.0, 2.0, 1.0], "labels": LABELS}
        for q, ids in (("q1", ["d0", "d3", "d4"]), ("q2", ["d3", "d0", "d9"]), ("q3", ["d10", "d1", "d2"]))
    ]
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_trained_checkpoints_load_in_pylate_with_identical_embeddings(
    tiny_bert_dir: Path, beir_dir: Path, tmp_path: Path, pylate_python: str
) -> None:
    output = tmp_path / "model"
    arguments = ["train", "--model", str(tiny_bert_dir), "--scores", str(write_train_inputs(tmp_path))]
    arguments += ["--data", str(beir_dir), "--split", "test", "--n-ways", "3", "--batch-size", "1"]
    arguments += ["--max-steps", "2", "--save-steps", "1", "--lr", "1e-3", "--embedding-dim", "16"]
    arguments += ["--query-length", "12", "--document-length", "24", "--device", "cpu", "--output", str(output)]
    assert main(arguments) == 0
    checkpoint = output / "checkpoints" / "checkpoint-2"
    for directory in (output, checkpoint):
        types = [m["type"] for m in json.loads((directory / "modules.json").read_text())]
        assert types == ["sentence_transformers.models.Transformer", "pylate.models.Dense.Dense"]
        assert json.loads((directory / "config_sentence_transformers.json").read_text())["model_type"] == "ColBERT"
    final, intermediate = pylate_encode(pylate_python, tmp_path, [output, checkpoint])
    assert_same_embeddings(MultiVectorEncoder(str(output), device="cpu"), final)
    assert_same_embeddings(MultiVectorEncoder(str(checkpoint), device="cpu"), intermediate)


def test_modernbert_and_prefixed_models_round_trip_through_pylate(
    tiny_modernbert_dir: Path, tiny_pylate_dir: Path, tmp_path: Path, pylate_python: str
) -> None:
    models = {
        "modernbert": build_colbert(tiny_modernbert_dir, embedding_dim=16, query_length=12, document_length=20),
        "prefixed": MultiVectorEncoder(str(tiny_pylate_dir), device="cpu"),  # [unused0] / [unused1] prefixes
    }
    directories = []
    for name, model in models.items():
        save_pylate(model, tmp_path / name)
        directories.append(tmp_path / name)
    references = pylate_encode(pylate_python, tmp_path, directories, resave=True)
    for number, (model, directory, reference) in enumerate(zip(models.values(), directories, references)):
        assert_same_embeddings(model, reference)  # the model that was saved
        assert_same_embeddings(MultiVectorEncoder(str(directory), device="cpu"), reference)  # reloaded by ST 6
        resaved = MultiVectorEncoder(str(tmp_path / f"pylate-saved-{number}"), device="cpu")  # saved by PyLate
        assert_same_embeddings(resaved, reference)


def test_export_converts_both_ways(tiny_modernbert_dir: Path, tmp_path: Path) -> None:
    model = build_colbert(tiny_modernbert_dir, embedding_dim=16, query_length=12, document_length=20)
    save_checkpoint(model, tmp_path / "st", "sentence-transformers")
    assert main(["export", str(tmp_path / "st"), str(tmp_path / "pylate")]) == 0
    assert main(["export", str(tmp_path / "pylate"), str(tmp_path / "back"), "--format", "sentence-transformers"]) == 0
    modules = json.loads((tmp_path / "back" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    expected = model.encode_document(TEXTS["documents"], convert_to_numpy=True)
    for directory in ("pylate", "back"):
        loaded = MultiVectorEncoder(str(tmp_path / directory), device="cpu")
        for a, b in zip(loaded.encode_document(TEXTS["documents"], convert_to_numpy=True), expected):
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6
    assert main(["export", str(tmp_path / "st"), str(tmp_path / "pylate")]) == 2  # not empty: refused


def test_pylate_format_refuses_what_pylate_cannot_reproduce(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = build_colbert(tiny_bert_dir, embedding_dim=16, query_length=12, document_length=20)
    model.prompts = {"query": "query: ", "document": ""}
    with pytest.raises(ValueError, match="prompt 'query: ' is text"):
        save_pylate(model, tmp_path / "prompt")
    model.prompts = {"query": "", "document": ""}
    model.insert(3, KMeansTokenPooling(pool_factor=2))
    with pytest.raises(ValueError, match="PyLate checkpoints hold"):
        save_pylate(model, tmp_path / "pooling")
    with pytest.raises(ValueError, match="checkpoint format must be one of"):
        save_checkpoint(model, tmp_path / "other", "onnx")
