"""IR metrics with trec_eval's definitions: nDCG@k (graded), MRR@k, MAP@k, recall@k.

Runs are ordered as trec_eval orders them (score descending, then document id descending), a
document is relevant when its grade is >= 1, and nDCG uses the grade as gain with a ``log2(rank + 1)``
discount against the ideal ordering of all judged grades. Tests check every value against
pytrec_eval to 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
METRICS = ("ndcg@10", "mrr@10", "map@100", "recall@10", "recall@100")


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval's order: score descending, ties by document id descending."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def ndcg_at(ranking: list[str], judgments: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gains (trec_eval's ``ndcg_cut``)."""
    dcg = sum(max(judgments.get(doc, 0), 0) / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]))
    ideal_grades = sorted((grade for grade in judgments.values() if grade > 0), reverse=True)[:k]
    ideal = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal_grades))
    return dcg / ideal if ideal > 0 else 0.0


def mrr_at(ranking: list[str], judgments: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top k (0 if none)."""
    for rank, doc in enumerate(ranking[:k], start=1):
        if judgments.get(doc, 0) >= 1:
            return 1.0 / rank
    return 0.0


def average_precision_at(ranking: list[str], judgments: Mapping[str, int], k: int) -> float:
    """Average precision over the top k, divided by all relevant documents (trec_eval's ``map_cut``)."""
    relevant = sum(1 for grade in judgments.values() if grade >= 1)
    hits, total = 0, 0.0
    for rank, doc in enumerate(ranking[:k], start=1):
        if judgments.get(doc, 0) >= 1:
            hits += 1
            total += hits / rank
    return total / relevant if relevant else 0.0


def recall_at(ranking: list[str], judgments: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents retrieved in the top k."""
    relevant = sum(1 for grade in judgments.values() if grade >= 1)
    found = sum(1 for doc in ranking[:k] if judgments.get(doc, 0) >= 1)
    return found / relevant if relevant else 0.0


def per_query_metrics(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """``{query_id: {metric: value}}`` for every judged query (a query missing from the run scores 0).

    Example::

        >>> per_query_metrics({"q": {"a": 2.0, "b": 1.0}}, {"q": {"b": 1}})["q"]["mrr@10"]
        0.5
    """
    results = {}
    for query_id, judgments in qrels.items():
        ranking = ranked(run.get(query_id, {}))
        results[query_id] = {
            "ndcg@10": ndcg_at(ranking, judgments, 10),
            "mrr@10": mrr_at(ranking, judgments, 10),
            "map@100": average_precision_at(ranking, judgments, 100),
            "recall@10": recall_at(ranking, judgments, 10),
            "recall@100": recall_at(ranking, judgments, 100),
        }
    return results


def mean_metrics(run: Run, qrels: Qrels) -> dict[str, float]:
    """Each metric of :data:`METRICS` averaged over the judged queries."""
    per_query = per_query_metrics(run, qrels)
    if not per_query:
        raise ValueError("no judged query to evaluate")
    return {metric: sum(values[metric] for values in per_query.values()) / len(per_query) for metric in METRICS}
