"""latepool.Index: build/open/search, atomic builds, updates, corrupted files, HTTP API, Qdrant parity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latepool.cli import main
from latepool.data import read_corpus
from latepool.index import Index
from latepool.index.storage import IdList
from latepool.models import build_colbert
from latepool.pooling import pool_documents
from latepool.scoring import maxsim_topk

SETTINGS = {
    "model": "",
    "model_hash": "",
    "query_length": 8,
    "document_length": 32,
    "pool_method": "kmeans",
    "pool_factor": 2,
    "dtype": "float16",
}


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir):
    return build_colbert(tiny_bert_dir, embedding_dim=16, query_length=12, document_length=64, device="cpu")


@pytest.fixture
def corpus(beir_dir: Path) -> tuple[list[str], list[str]]:
    return read_corpus(beir_dir / "corpus.jsonl")


def random_documents(count: int, seed: int = 0, dim: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.nn.functional.normalize(torch.randn(3 + i % 5, dim, generator=generator), dim=-1) for i in range(count)
    ]


def test_build_open_search(tiny_model, corpus, tmp_path: Path) -> None:
    ids, texts = corpus
    built = Index.build(
        tmp_path / "idx", tiny_model, ids, texts, model_name="tiny", pool_factor=2, show_progress_bar=False
    )
    assert len(built) == 12
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    for key in (
        "format_version",
        "model",
        "model_hash",
        "query_length",
        "document_length",
        "pool_method",
        "pool_factor",
        "dtype",
        "dim",
        "document_count",
        "vector_count",
        "latepool_version",
        "checksums",
    ):
        assert key in manifest
    assert manifest["document_count"] == 12 and manifest["dim"] == 16 and manifest["query_length"] == 12
    reopened = Index.open(tmp_path / "idx", model=tiny_model)
    queries = ["protein expression in human cells", "blood levels in mice"]
    hits = reopened.search(queries, k=3)
    pooled = pool_documents(tiny_model.encode_document(texts), method="kmeans", pool_factor=2)
    scores, indices = maxsim_topk(tiny_model.encode_query(queries), pooled, 3)
    assert [[d for d, _ in row] for row in hits] == [[ids[i] for i in row] for row in indices.tolist()]
    assert [s for _, s in hits[0]] == pytest.approx(scores[0].tolist(), abs=2e-3)  # float16 storage
    with pytest.raises(ValueError, match="non-empty"):
        reopened.search(["  "])
    with pytest.raises(ValueError, match="already holds an index"):
        Index.build(tmp_path / "idx", tiny_model, ids, texts, show_progress_bar=False)


def test_int8_index_is_close_to_float16(corpus, tmp_path: Path) -> None:
    docs = random_documents(30, dim=16)
    ids = [f"d{i}" for i in range(30)]
    exact = Index.from_documents(tmp_path / "f16", ids, docs, SETTINGS)
    small = Index.from_documents(tmp_path / "i8", ids, docs, {**SETTINGS, "dtype": "int8"})
    assert (tmp_path / "i8").stat() and _size(tmp_path / "i8") < _size(tmp_path / "f16")
    queries = random_documents(5, seed=9, dim=16)
    for a, b in zip(exact.search_embeddings(queries, 5), small.search_embeddings(queries, 5)):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=0.05)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("vectors.npy"))


def test_failed_build_keeps_the_previous_index(tmp_path: Path, monkeypatch) -> None:
    docs, ids = random_documents(10), [f"d{i}" for i in range(10)]
    Index.from_documents(tmp_path / "idx", ids, docs, SETTINGS)
    import latepool.index.writer as index_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(index_module, "write_manifest", broken)
    with pytest.raises(OSError, match="disk full"):
        Index.from_documents(tmp_path / "idx", ["x"], random_documents(1, seed=5), SETTINGS, overwrite=True)
    with pytest.raises(OSError):
        Index.from_documents(tmp_path / "fresh", ids, docs, SETTINGS)
    monkeypatch.undo()
    assert Index.open(tmp_path / "idx").ids == ids
    assert not (tmp_path / "fresh").exists()


KILLED_BUILD = """
import os, signal, sys, torch
import latepool.index.writer as index_module
from latepool.index import Index
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
index_module.write_manifest = die
settings = {settings}
docs = [torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(3)]
Index.from_documents(sys.argv[1], ["a", "b", "c"], docs, settings, overwrite=True)
"""


def test_killed_build_leaves_the_old_index_readable(tmp_path: Path) -> None:
    docs, ids = random_documents(6), [f"d{i}" for i in range(6)]
    Index.from_documents(tmp_path / "idx", ids, docs, SETTINGS)
    script = KILLED_BUILD.format(settings=repr(SETTINGS))
    for target in (tmp_path / "idx", tmp_path / "new"):
        result = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, timeout=120)
        assert result.returncode == -9  # SIGKILL
    assert Index.open(tmp_path / "idx").ids == ids  # old index intact, verified by checksums
    with pytest.raises(ValueError, match="not a latepool index"):
        Index.open(tmp_path / "new")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operations=st.lists(
        st.tuples(st.sampled_from(["add", "replace", "delete", "compact"]), st.integers(0, 11)), max_size=8
    )
)
def test_ids_stay_consistent_across_updates(tmp_path_factory, operations) -> None:
    path = tmp_path_factory.mktemp("prop") / "idx"
    docs = random_documents(12, seed=1)
    expected = {f"d{i}": docs[i] for i in range(4)}
    index = Index.from_documents(path, list(expected), list(expected.values()), SETTINGS)
    for operation, number in operations:
        doc_id = f"d{number}"
        if operation == "add" and doc_id not in expected:
            index.add_documents([doc_id], [docs[number]])
            expected[doc_id] = docs[number]
        elif operation == "add":
            with pytest.raises(ValueError, match="already exist"):
                index.add_documents([doc_id], [docs[number]])
        elif operation == "replace":
            index.add_documents([doc_id], [docs[(number + 1) % 12]], replace=True)
            expected[doc_id] = docs[(number + 1) % 12]
        elif operation == "delete" and doc_id in expected:
            index.delete([doc_id])
            del expected[doc_id]
        elif operation == "delete":
            with pytest.raises(ValueError, match="not in the index"):
                index.delete([doc_id])
        else:
            index.compact()
        assert sorted(index.ids) == sorted(expected)
        if expected:
            hits = index.search_embeddings([docs[number]], k=len(expected))[0]
            assert sorted(d for d, _ in hits) == sorted(expected)  # deletes visible at once
    reopened = Index.open(path)
    assert sorted(reopened.ids) == sorted(expected)
    for ids, documents in reopened.documents(batch_size=3):
        for doc_id, vectors in zip(ids, documents):
            assert torch.allclose(vectors, expected[doc_id], atol=1e-3)
    index.compact()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["deleted"] == {}  # space reclaimed: no segment keeps a deleted document
    assert {p.name for p in path.glob("seg-*")} == set(manifest["segments"])
    assert sorted(Index.open(path).ids) == sorted(expected)


@given(st.lists(st.text(min_size=0, max_size=8), max_size=20))
def test_id_list_holds_what_a_list_holds(ids) -> None:
    held = IdList(ids)
    assert len(held) == len(ids) and list(held) == ids and held[1:-1:2] == ids[1:-1:2]
    if ids:
        assert held[-1] == ids[-1] and held[0] == ids[0]
    with pytest.raises(IndexError):
        held[len(ids)]


def test_corrupted_and_missing_files_are_named(tmp_path: Path) -> None:
    Index.from_documents(tmp_path / "idx", ["a", "b"], random_documents(2), SETTINGS)
    segment = next((tmp_path / "idx").glob("seg-*"))
    data = bytearray((segment / "vectors.npy").read_bytes())
    data[-1] ^= 0xFF  # a vector byte, after the .npy header
    (segment / "vectors.npy").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupted index file.*vectors.npy"):
        Index.open(tmp_path / "idx", verify=True)
    assert len(Index.open(tmp_path / "idx")) == 2  # opening checks shapes and sizes, not checksums
    (segment / "vectors.npy").write_bytes(bytes(data[:-64]))  # truncated: refused even unverified
    with pytest.raises(ValueError, match="vectors"):
        Index.open(tmp_path / "idx", verify=False)
    (segment / "ids.json").unlink()
    with pytest.raises(ValueError, match=r"missing index file.*ids.json"):
        Index.open(tmp_path / "idx", verify=True)
    with pytest.raises(ValueError, match=r"missing index file.*ids.json"):
        Index.open(tmp_path / "idx")
    with pytest.raises(ValueError, match="not a latepool index"):
        Index.open(tmp_path / "nowhere")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(ValueError, match="index format 1.*rebuild"):
        Index.open(tmp_path / "idx")


def test_model_that_does_not_match_the_index_is_refused(tiny_model, tiny_bert_dir, corpus, tmp_path: Path) -> None:
    ids, texts = corpus
    Index.build(tmp_path / "idx", tiny_model, ids, texts, show_progress_bar=False)
    other = build_colbert(tiny_bert_dir, embedding_dim=8, query_length=12, document_length=64, device="cpu")
    with pytest.raises(ValueError, match="dim is 8, the index was built with 16"):
        Index.open(tmp_path / "idx", model=other).search(["protein"])


def test_cli_build_search_update(tiny_pylate_dir, beir_dir: Path, tmp_path: Path, capsys) -> None:
    index = tmp_path / "idx"
    base = ["--model", str(tiny_pylate_dir)]
    assert main(["index", "build", *base, "--corpus", str(beir_dir), "--output", str(index), "--pool-factor", "2"]) == 0
    assert main(["index", "build", *base, "--corpus", str(beir_dir), "--output", str(index)]) == 2  # refused
    assert "already holds an index" in capsys.readouterr().err
    assert main(["search", "--index", str(index), "--query", "protein expression", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(hits) == 3 and {"id", "score"} <= set(hits[0])
    assert (
        main(
            [
                "search",
                "--index",
                str(index),
                "--queries",
                str(beir_dir / "queries.jsonl"),
                "--output",
                str(tmp_path / "run.trec"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert len(lines) == 5 * 12 and lines[0].split()[1] == "Q0"
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "new1", "title": "New", "text": "mice protein"}) + "\n")
    assert main(["index", "add", "--index", str(index), "--corpus", str(extra)]) == 0
    assert main(["index", "add", "--index", str(index), "--corpus", str(extra)]) == 2  # exists
    assert main(["index", "add", "--index", str(index), "--corpus", str(extra), "--replace"]) == 0
    assert main(["index", "delete", "--index", str(index), "--ids", "d0,new1"]) == 0
    assert main(["index", "compact", "--index", str(index)]) == 0
    assert sorted(Index.open(index).ids) == sorted(f"d{i}" for i in range(1, 12))


def test_bad_corpus_writes_nothing(tiny_pylate_dir, tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "corpus.jsonl"
    build = [
        "index",
        "build",
        "--model",
        str(tiny_pylate_dir),
        "--corpus",
        str(corpus),
        "--output",
        str(tmp_path / "idx"),
    ]
    corpus.write_bytes(b'{"id": "a", "text": "fine"}\n{"id": "b", "text": "bad \xff byte"}\n')
    assert main(build) == 2
    assert "corpus.jsonl:2: not valid UTF-8" in capsys.readouterr().err
    corpus.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": ""}\n')
    assert main(build) == 2
    assert "empty text" in capsys.readouterr().err
    assert not (tmp_path / "idx").exists()


def test_candidate_search_finds_the_exact_top_k_when_probing_everything(tmp_path: Path) -> None:
    docs, ids = random_documents(60, dim=16), [f"d{i}" for i in range(60)]
    index = Index.from_documents(tmp_path / "idx", ids, docs, SETTINGS)
    index.delete(["d3", "d17"])
    index.add_documents(["n1", "n2"], random_documents(2, seed=5, dim=16))  # a second segment, own lists
    queries = random_documents(6, seed=3, dim=16)
    exact = index.search_embeddings(queries, 5, candidates=False)
    approximate = index.search_embeddings(queries, 5, candidates=True, nprobe=10_000, rescore=60)
    assert [[h.id for h in row] for row in approximate] == [[h.id for h in row] for row in exact]
    assert [h.score for row in approximate for h in row] == pytest.approx([h.score for row in exact for h in row])
    assert all(len(row) == 5 and not {"d3", "d17"} & {d for d, _ in row} for row in approximate)
    few = index.search_embeddings(queries, 5, candidates=True, nprobe=1, rescore=8)
    assert all(0 < len(row) <= 5 for row in few)  # a narrow probe still answers, from the probed lists


def test_index_built_with_other_lengths_searches_from_cli_python_and_http(
    tiny_pylate_dir, beir_dir: Path, tmp_path: Path, capsys, running_server
) -> None:
    httpx = pytest.importorskip("httpx")
    from latepool.index.server import create_app
    from latepool.models import load_model, set_lengths

    index_path = tmp_path / "idx"
    lengths = ["--query-length", "20", "--document-length", "40"]  # the checkpoint's are 12 and 64
    build = ["index", "build", "--model", str(tiny_pylate_dir), "--corpus", str(beir_dir), "--output", str(index_path)]
    assert main([*build, *lengths, "--pool-factor", "2"]) == 0
    assert main(["search", "--index", str(index_path), "--query", "protein expression", "-k", "3", "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    index = Index.open(index_path)
    from_python = index.search(["protein expression"], k=3)[0]
    transformer = index.model()[0]
    assert (transformer.query_length, transformer.document_length) == (20, 40)
    reference = load_model(str(tiny_pylate_dir), device="cpu")
    set_lengths(reference, 20, 40)
    query = reference.encode_query(["protein expression"], convert_to_numpy=False)[0].float()
    assert from_python == index.search_embeddings([query], k=3)[0]
    assert [h["id"] for h in from_cli] == [d for d, _ in from_python]

    with running_server(create_app(Index.open(index_path))) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/search", json={"query": "protein expression", "k": 3})
    assert response.status_code == 200
    assert [h["id"] for h in response.json()["results"][0]] == [d for d, _ in from_python]
