"""BEIR-layout loading, its errors, and the hub loaders on local copies laid out like the hub repositories."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from latepool import data
from latepool.data import load_beir, load_dataset


def test_load_beir_fixture(beir_dir: Path) -> None:
    dataset = load_dataset(beir_dir, split="test")
    assert dataset.name == "fixture"
    assert len(dataset.corpus_ids) == 12
    assert dataset.query_ids == ["q1", "q2", "q3", "q4"]  # q5 has no judgments
    assert dataset.qrels["q1"] == {"d0": 2, "d11": 1}  # grades kept
    assert dataset.qrels["q2"]["d6"] == 0
    assert (
        dataset.corpus_texts[0] == "Protein study the protein expression was increased in human cells after treatment"
    )
    assert dataset.corpus_texts[2] == "mice brain cells increase after treatment with more protein"  # no stray space


def test_qrels_header_is_optional_and_gzip_is_read(beir_dir: Path) -> None:
    qrels = beir_dir / "qrels" / "test.tsv"
    qrels.write_text("\n".join(qrels.read_text().splitlines()[1:]) + "\n")
    corpus = beir_dir / "corpus.jsonl"
    with gzip.open(beir_dir / "corpus.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write(corpus.read_text())
    corpus.unlink()
    dataset = load_beir(beir_dir, "test")
    assert len(dataset.corpus_ids) == 12 and len(dataset.qrels) == 4


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_files_are_named(beir_dir: Path, missing: str) -> None:
    (beir_dir / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing.split("/")[-1]):
        load_beir(beir_dir, "test")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_beir(beir_dir / "nowhere", "test")


def test_missing_split(beir_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dev.tsv"):
        load_beir(beir_dir, "dev")


def test_malformed_json_names_file_and_line(beir_dir: Path) -> None:
    corpus = beir_dir / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    lines[4] = '{"_id": "d4", "text": '
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"corpus.jsonl:5: malformed JSON"):
        load_beir(beir_dir, "test")
    lines[4] = '{"title": "no id"}'
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"corpus.jsonl:5: expected an object with an '_id'"):
        load_beir(beir_dir, "test")


def test_non_utf8_names_file_and_line(beir_dir: Path) -> None:
    queries = beir_dir / "queries.jsonl"
    raw = queries.read_bytes().splitlines(keepends=True)
    raw[2] = b'{"_id": "q3", "text": "blood \xff\xfe levels"}\n'
    queries.write_bytes(b"".join(raw))
    with pytest.raises(ValueError, match=r"queries.jsonl:3: not valid UTF-8"):
        load_beir(beir_dir, "test")


def test_malformed_qrels(beir_dir: Path) -> None:
    qrels = beir_dir / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q1\td2\n")
    with pytest.raises(ValueError, match=r"test.tsv:9: expected 3 tab-separated fields"):
        load_beir(beir_dir, "test")
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td2\thigh\n")
    with pytest.raises(ValueError, match=r"test.tsv:2: score 'high' is not a number"):
        load_beir(beir_dir, "test")


def test_duplicate_ids_and_empty_queries(beir_dir: Path) -> None:
    corpus = beir_dir / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps({"_id": "d3", "title": "", "text": "again"}) + "\n")
    with pytest.raises(ValueError, match="duplicate document id 'd3'"):
        load_beir(beir_dir, "test")
    write_queries = beir_dir / "queries.jsonl"
    shutil.copy(write_queries, beir_dir / "q.bak")
    corpus.write_text("\n".join(corpus.read_text().splitlines()[:-1]) + "\n")
    write_queries.write_text(json.dumps({"_id": "q1", "text": "  "}) + "\n")
    with pytest.raises(ValueError, match="query 'q1' has empty text"):
        load_beir(beir_dir, "test")


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_nanobeir_loader_reads_the_hub_layout(beir_dir: Path, tmp_path: Path, monkeypatch) -> None:
    fixture = load_beir(beir_dir, "test")
    repo = tmp_path / "NanoBEIR-en"
    _write_parquet(
        repo / "corpus" / "NanoSciFact-00000-of-00001.parquet",
        [{"_id": i, "text": t} for i, t in zip(fixture.corpus_ids, fixture.corpus_texts)],
    )
    _write_parquet(
        repo / "queries" / "NanoSciFact-00000-of-00001.parquet",
        [{"_id": i, "text": t} for i, t in zip(fixture.query_ids, fixture.query_texts)],
    )
    _write_parquet(
        repo / "qrels" / "NanoSciFact-00000-of-00001.parquet",
        [{"query-id": q, "corpus-id": d} for q, docs in fixture.qrels.items() for d in docs],
    )
    requests = []

    def fake_download(repo_id: str, allow_patterns: list[str]) -> Path:
        requests.append((repo_id, allow_patterns))
        return repo

    monkeypatch.setattr(data, "_download", fake_download)
    dataset = load_dataset("nanobeir:scifact")
    assert requests[0][0] == "sentence-transformers/NanoBEIR-en"
    assert "corpus/NanoSciFact-*.parquet" in requests[0][1]
    assert dataset.name == "NanoSciFact"
    assert dataset.corpus_texts == fixture.corpus_texts and dataset.query_ids == fixture.query_ids
    assert dataset.qrels["q1"] == {"d0": 1, "d11": 1}  # NanoBEIR qrels carry no grade: 1
    with pytest.raises(ValueError, match="unknown NanoBEIR dataset"):
        load_dataset("nanobeir:nosuch")


def test_beir_hub_loader_reads_the_hub_layout(beir_dir: Path, tmp_path: Path, monkeypatch) -> None:
    documents, judgments = tmp_path / "BeIR-fixture", tmp_path / "BeIR-fixture-qrels"
    documents.mkdir()
    judgments.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl"):
        with gzip.open(documents / f"{name}.gz", "wt", encoding="utf-8") as out:
            out.write((beir_dir / name).read_text())
    shutil.copy(beir_dir / "qrels" / "test.tsv", judgments / "test.tsv")
    monkeypatch.setattr(
        data, "_download", lambda repo_id, allow_patterns: judgments if repo_id.endswith("-qrels") else documents
    )
    dataset = load_dataset("beir:fixture", split="test")
    expected = load_beir(beir_dir, "test")
    assert (dataset.corpus_texts, dataset.qrels) == (expected.corpus_texts, expected.qrels)
