"""Retrieval test collections: BEIR-layout directories, and NanoBEIR / BEIR from the Hugging Face hub.

A BEIR directory holds ``corpus.jsonl`` ({"_id", "title", "text"}), ``queries.jsonl`` ({"_id", "text"})
and ``qrels/<split>.tsv`` ("query-id<TAB>corpus-id<TAB>score", header optional). Documents are read
as ``title + " " + text`` (the BEIR convention); judgments keep their grades; only queries judged in
the split are evaluated. Hub datasets are downloaded with ``huggingface_hub`` into its cache and read
through the same code.

Example::

    dataset = load_dataset("../shared/data/scifact", split="test")
    dataset = load_dataset("nanobeir:scifact")          # sentence-transformers/NanoBEIR-en
    dataset = load_dataset("beir:nfcorpus", split="test")  # BeIR/nfcorpus + BeIR/nfcorpus-qrels
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latepool.extras import require

NANOBEIR_REPO = "sentence-transformers/NanoBEIR-en"
NANOBEIR_NAMES = {
    "arguana": "ArguAna",
    "climatefever": "ClimateFEVER",
    "dbpedia": "DBPedia",
    "fever": "FEVER",
    "fiqa": "FiQA2018",
    "fiqa2018": "FiQA2018",
    "hotpotqa": "HotpotQA",
    "msmarco": "MSMARCO",
    "nfcorpus": "NFCorpus",
    "nq": "NQ",
    "quoraretrieval": "QuoraRetrieval",
    "scidocs": "SCIDOCS",
    "scifact": "SciFact",
    "touche2020": "Touche2020",
}


@dataclass
class RetrievalDataset:
    """A test collection held in memory.

    Attributes:
        name: Short name used in reports (the directory or hub name).
        corpus_ids / corpus_texts: Documents, in file order, text = title + " " + text.
        query_ids / query_texts: The queries judged in the split, in file order.
        qrels: ``{query_id: {doc_id: grade}}`` (grades as given; > 0 means relevant).
    """

    name: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]] = field(repr=False)

    def __repr__(self) -> str:
        return f"RetrievalDataset({self.name!r}, documents={len(self.corpus_ids)}, queries={len(self.query_ids)})"

    def subset(self, max_queries: int | None = None, max_documents: int | None = None) -> RetrievalDataset:
        """A smaller collection for a quick run: the first ``max_queries`` queries, and a corpus of their
        judged documents topped up with the corpus's first documents to ``max_documents`` (None: all).

        Example::

            >>> data = RetrievalDataset("d", ["a", "b", "c"], ["A", "B", "C"], ["q1", "q2"], ["Q1", "Q2"],
            ...                         {"q1": {"c": 1}, "q2": {"a": 1}})
            >>> small = data.subset(max_queries=1, max_documents=2)
            >>> small.query_ids, small.corpus_ids
            (['q1'], ['a', 'c'])
        """
        for name, value in (("max_queries", max_queries), ("max_documents", max_documents)):
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        queries = slice(0, max_queries)
        query_ids = self.query_ids[queries]
        qrels = {q: self.qrels[q] for q in query_ids if q in self.qrels}
        keep = {d for judged in qrels.values() for d in judged}
        if max_documents is None:
            keep = set(self.corpus_ids)
        else:
            for doc_id in self.corpus_ids:
                if len(keep) >= max_documents:
                    break
                keep.add(doc_id)
        corpus = [(i, t) for i, t in zip(self.corpus_ids, self.corpus_texts) if i in keep]
        return RetrievalDataset(
            self.name,
            [i for i, _ in corpus],
            [t for _, t in corpus],
            query_ids,
            self.query_texts[queries],
            qrels,
        )


def load_dataset(source: str | Path, split: str = "test") -> RetrievalDataset:
    """Load a collection from a BEIR directory, ``nanobeir:<name>`` or ``beir:<name>``.

    Args:
        source: A local BEIR-layout directory, ``nanobeir:scifact`` (NanoBEIR on the hub; the split
            is ignored, NanoBEIR has one) or ``beir:scifact`` (the BEIR hub copy).
        split: qrels split for BEIR sources (``test``, ``dev``, ``train``).

    Returns:
        The dataset. Raises ``FileNotFoundError`` for missing files and ``ValueError`` naming the
        file and line for malformed content.
    """
    text = str(source)
    if text.startswith("nanobeir:"):
        return load_nanobeir(text.split(":", 1)[1])
    if text.startswith("beir:"):
        return load_beir_hub(text.split(":", 1)[1], split)
    return load_beir(Path(source), split)


def load_beir(directory: Path, split: str = "test", name: str | None = None) -> RetrievalDataset:
    """Load a BEIR-layout directory (``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``, ``qrels/<split>.tsv``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {directory}")
    qrels = read_qrels(_existing(directory / "qrels" / f"{split}.tsv"))
    corpus = [(row["_id"], document_text(row)) for row in read_jsonl(_existing(directory / "corpus.jsonl"))]
    queries = [(row["_id"], row.get("text") or "") for row in read_jsonl(_existing(directory / "queries.jsonl"))]
    return _assemble(name or directory.name, corpus, queries, qrels, directory)


def document_text(row: dict) -> str:
    """BEIR document text: ``title + " " + text``, without a stray space when either is empty."""
    return " ".join(part for part in (row.get("title") or "", row.get("text") or "") if part)


def _existing(path: Path) -> Path:
    """``path``, or its ``.gz`` twin (the hub's BEIR copies are gzipped); FileNotFoundError if neither."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"missing file: {path}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 (optionally gzipped) file; ValueError naming file and line on bad bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid UTF-8 ({error.reason} at byte {error.start})") from error


def _json_objects(path: Path) -> Iterator[tuple[int, Any]]:
    """Numbered JSON values of a JSON-lines file; blank lines are skipped, bad JSON names file and line."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: malformed JSON ({error.msg})") from error


def read_jsonl(path: Path) -> Iterator[dict]:
    """Objects of a JSON-lines file that each have an ``_id`` (made a string); blank lines are skipped."""
    for number, row in _json_objects(path):
        if not isinstance(row, dict) or "_id" not in row:
            raise ValueError(f"{path}:{number}: expected an object with an '_id' field")
        row["_id"] = str(row["_id"])
        yield row


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``{query_id: {doc_id: grade}}`` from a BEIR qrels TSV (header line optional)."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if not line.strip() or (number == 1 and fields[0] == "query-id"):
            continue
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 3 tab-separated fields (query-id, corpus-id, score)")
        try:
            grade = int(float(fields[2]))
        except ValueError as error:
            raise ValueError(f"{path}:{number}: score {fields[2]!r} is not a number") from error
        qrels.setdefault(fields[0], {})[fields[1]] = grade
    return qrels


def _assemble(
    name: str,
    corpus: list[tuple[str, str]],
    queries: list[tuple[str, str]],
    qrels: dict[str, dict[str, int]],
    where: Path | str,
) -> RetrievalDataset:
    """Check ids, keep the judged queries, and build the dataset."""
    for kind, rows in (("document", corpus), ("query", queries)):
        seen: set[str] = set()
        for identifier, _ in rows:
            if identifier in seen:
                raise ValueError(f"{where}: duplicate {kind} id {identifier!r}")
            seen.add(identifier)
    judged = [(identifier, text) for identifier, text in queries if identifier in qrels]
    if not judged:
        raise ValueError(f"{where}: no query of the qrels is in the queries file")
    empty = [identifier for identifier, text in judged if not text.strip()]
    if empty:
        raise ValueError(f"{where}: query {empty[0]!r} has empty text ({len(empty)} empty queries)")
    if not corpus:
        raise ValueError(f"{where}: the corpus is empty")
    return RetrievalDataset(
        name=name,
        corpus_ids=[identifier for identifier, _ in corpus],
        corpus_texts=[text for _, text in corpus],
        query_ids=[identifier for identifier, _ in judged],
        query_texts=[text for _, text in judged],
        qrels={identifier: qrels[identifier] for identifier, _ in judged},
    )


def _download(repo_id: str, allow_patterns: list[str]) -> Path:
    """Snapshot of a hub dataset repository (only the matching files) in the huggingface_hub cache."""
    require("hub", "loading hub datasets")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=allow_patterns))


def _read_parquet_rows(paths: list[Path]) -> list[dict]:
    require("hub", "reading parquet files")
    import pyarrow.parquet as pq

    if not paths:
        raise FileNotFoundError("no parquet file matched in the downloaded dataset")
    return [row for path in sorted(paths) for row in pq.read_table(path).to_pylist()]


def load_nanobeir(name: str) -> RetrievalDataset:
    """A NanoBEIR collection (``scifact``, ``nfcorpus``, ``fiqa``, ...) from sentence-transformers/NanoBEIR-en."""
    key = name.lower().removeprefix("nano").replace("-", "").replace("_", "")
    if key not in NANOBEIR_NAMES:
        raise ValueError(f"unknown NanoBEIR dataset {name!r}; known: {sorted(set(NANOBEIR_NAMES))}")
    split = f"Nano{NANOBEIR_NAMES[key]}"
    root = _download(NANOBEIR_REPO, [f"{subset}/{split}-*.parquet" for subset in ("corpus", "queries", "qrels")])
    rows = {
        subset: _read_parquet_rows(list((root / subset).glob(f"{split}-*.parquet")))
        for subset in ("corpus", "queries", "qrels")
    }
    corpus = [(str(row["_id"]), document_text(row)) for row in rows["corpus"]]
    queries = [(str(row["_id"]), row.get("text") or "") for row in rows["queries"]]
    qrels: dict[str, dict[str, int]] = {}
    for row in rows["qrels"]:
        qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row.get("score", 1))
    return _assemble(split, corpus, queries, qrels, f"{NANOBEIR_REPO}/{split}")


def load_beir_hub(name: str, split: str = "test") -> RetrievalDataset:
    """A BEIR collection from the hub: ``BeIR/<name>`` (corpus, queries) and ``BeIR/<name>-qrels``."""
    documents = _download(f"BeIR/{name}", ["corpus.jsonl.gz", "queries.jsonl.gz"])
    judgments = _download(f"BeIR/{name}-qrels", [f"{split}.tsv"])
    corpus = [(row["_id"], document_text(row)) for row in read_jsonl(_existing(documents / "corpus.jsonl"))]
    queries = [(row["_id"], row.get("text") or "") for row in read_jsonl(_existing(documents / "queries.jsonl"))]
    return _assemble(name, corpus, queries, read_qrels(_existing(judgments / f"{split}.tsv")), f"BeIR/{name}")


def read_corpus(path: str | Path) -> tuple[list[str], list[str]]:
    """Documents to index: ``(ids, texts)`` from a BEIR directory, a BEIR ``corpus.jsonl``, or a
    jsonl / parquet file of ``{id, text[, title]}`` (``_id`` accepted for ``id``).

    Texts are ``title + " " + text``. Raises ``FileNotFoundError`` / ``ValueError`` naming the file
    (and line) for missing files, malformed or non-UTF-8 lines, missing fields and duplicate ids.
    """
    path = Path(path)
    if path.is_dir():
        path = _existing(path / "corpus.jsonl")
    if not path.is_file():
        raise FileNotFoundError(f"corpus not found: {path}")
    if path.suffix == ".parquet":
        rows = [(str(row.get("id", row.get("_id"))), row) for row in _read_parquet_rows([path])]
    else:
        rows = []
        for number, row in _json_objects(path):
            if not isinstance(row, dict) or ("id" not in row and "_id" not in row) or "text" not in row:
                raise ValueError(f"{path}:{number}: expected an object with 'id' (or '_id') and 'text' fields")
            rows.append((str(row.get("id", row.get("_id"))), row))
    ids = [identifier for identifier, _ in rows]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: duplicate document id {duplicate!r}")
    return ids, [document_text(row) for _, row in rows]
