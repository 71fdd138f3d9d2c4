"""Training examples for distillation: (query, document_1..document_N, teacher scores) rows.

Built from a scores dataset (``query_id, document_ids, scores, labels``, the published
stefan-jo/scifact-train-mined-reranker-scores format) and the collection's texts. Rows that cannot
be used are counted by reason and skipped, as the paper's filters do; an error is raised when no
row is left.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from latepool.data import RetrievalDataset


@dataclass
class TrainingExamples:
    """The columns the sentence-transformers trainer takes, and what was skipped.

    Attributes:
        columns: ``{"query": [...], "document_1": [...], ..., "label": [[score, ...], ...]}``.
        skipped: Rows (or, for ``documents_missing_from_corpus``, documents) left out, by reason.
    """

    columns: dict[str, list]
    skipped: Counter

    def __len__(self) -> int:
        return len(self.columns["query"])

    def to_dataset(self):
        """The examples as a ``datasets.Dataset``."""
        from datasets import Dataset

        return Dataset.from_dict(self.columns)


def build_examples(rows, dataset: RetrievalDataset, n_ways: int = 16) -> TrainingExamples:
    """Turn scored rows into ``n_ways``-document examples: the positive and the next best documents.

    Args:
        rows: Iterable of mappings with query_id, document_ids, scores, labels.
        dataset: Texts of the queries and the corpus.
        n_ways: Documents per query (positive included), >= 2.

    Returns:
        The examples; documents of each example sorted by teacher score, descending.
    """
    if n_ways < 2:
        raise ValueError(f"n_ways must be >= 2 (a softmax over one document is constant), got {n_ways}")
    corpus = dict(zip(dataset.corpus_ids, dataset.corpus_texts))
    queries = dict(zip(dataset.query_ids, dataset.query_texts))
    columns: dict[str, list] = {"query": [], **{f"document_{i}": [] for i in range(1, n_ways + 1)}, "label": []}
    skipped: Counter = Counter()
    for row in rows:
        ids, scores, labels = list(row["document_ids"]), list(row["scores"]), list(row["labels"])
        reason = _problem(row["query_id"], ids, scores, labels, queries)
        if reason:
            skipped[reason] += 1
            continue
        present = [i for i, doc in enumerate(ids) if doc in corpus]
        skipped["documents_missing_from_corpus"] += len(ids) - len(present)
        positive = next((i for i in present if labels[i] == "positive"), None)
        if positive is None:
            skipped["positive_missing_from_corpus"] += 1
            continue
        chosen = [positive] + [i for i in sorted(present, key=lambda i: -scores[i]) if i != positive][: n_ways - 1]
        if len(chosen) < n_ways:
            skipped["fewer_than_n_ways"] += 1
            continue
        chosen.sort(key=lambda i: -scores[i])
        columns["query"].append(queries[row["query_id"]])
        for column, index in enumerate(chosen, start=1):
            columns[f"document_{column}"].append(corpus[ids[index]])
        columns["label"].append([float(scores[i]) for i in chosen])
    if not columns["query"]:
        raise ValueError(f"no usable training example is left (skipped: {dict(+skipped)})")
    return TrainingExamples(columns, +skipped)


def _problem(query_id: str, ids: list, scores: list, labels: list, queries: dict) -> str | None:
    if not (len(ids) == len(scores) == len(labels)):
        return "inconsistent_lengths"
    if "positive" not in labels:
        return "no_positive"
    if query_id not in queries:
        return "unknown_query"
    return None
