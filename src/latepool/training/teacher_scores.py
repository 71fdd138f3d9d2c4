"""``latepool score``: teacher scores for every mined candidate, then the paper's candidate selection.

Per query: the best-scored positive; negatives scoring above ``0.95 x`` the median positive score
are dropped (likely unjudged positives); then ``hard`` best-scored hard negatives, ``medium`` hard
negatives from teacher ranks ``hard + 1`` on, and ``random`` random negatives, each group backfilled
from the others when short; the kept documents are sorted by teacher score, descending.

Scoring is checkpointed: finished queries go to ``<output>.partial/`` in shards, so an interrupted
run resumes without rescoring them.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from latepool.data import RetrievalDataset
from latepool.training.mining import MinedQuery


@dataclass
class Selection:
    """How many documents of each kind the selection keeps, and the false-negative filter.

    ``false_negative_ratio=None`` keeps every negative (no filter).
    """

    hard: int = 5
    medium: int = 5
    random: int = 5
    false_negative_ratio: float | None = 0.95


@dataclass
class ScoredQuery:
    """One row of the scores dataset (the column format of stefan-jo/scifact-train-mined-reranker-scores)."""

    query_id: str
    document_ids: list[str]
    scores: list[float]
    labels: list[str]


def select_candidates(mined: MinedQuery, teacher_scores: dict[str, float], selection: Selection) -> ScoredQuery:
    """Apply the paper's selection to one query's scored candidates.

    Args:
        mined: The query's positives, hard negatives (retriever order) and random negatives.
        teacher_scores: Teacher score of every candidate document id.
        selection: Group sizes and the false-negative ratio.

    Returns:
        The kept documents with scores and labels, sorted by score descending.
    """
    positives = [d for d in mined.positive_ids if d in teacher_scores]
    if not positives:
        raise ValueError(f"query {mined.query_id!r}: no positive document has a teacher score")
    positive = max(positives, key=lambda doc: teacher_scores[doc])
    threshold = math.inf
    if selection.false_negative_ratio is not None:
        threshold = selection.false_negative_ratio * statistics.median(teacher_scores[d] for d in positives)

    def kept(ids: Iterable[str]) -> list[str]:
        return [
            d
            for d in dict.fromkeys(ids)
            if d in teacher_scores and d not in mined.positive_ids and teacher_scores[d] <= threshold
        ]

    hard_pool = sorted(kept(mined.hard_negative_ids), key=lambda d: -teacher_scores[d])
    random_pool = [d for d in kept(mined.random_negative_ids) if d not in set(hard_pool)]
    groups = {
        "hard_negative": hard_pool[: selection.hard],
        "medium_negative": hard_pool[selection.hard : selection.hard + selection.medium],
        "random_negative": random_pool[: selection.random],
    }
    wanted = selection.hard + selection.medium + selection.random
    spare = hard_pool[selection.hard + selection.medium :] + random_pool[selection.random :]
    shortfall = wanted - sum(len(g) for g in groups.values())
    backfill = spare[: max(shortfall, 0)]
    labelled = [(positive, "positive")] + [(d, label) for label, ids in groups.items() for d in ids]
    labelled += [(d, "hard_negative" if d in set(hard_pool) else "random_negative") for d in backfill]
    labelled.sort(key=lambda item: -teacher_scores[item[0]])
    return ScoredQuery(
        query_id=mined.query_id,
        document_ids=[d for d, _ in labelled],
        scores=[float(teacher_scores[d]) for d, _ in labelled],
        labels=[label for _, label in labelled],
    )


def score_mined(
    mined: list[MinedQuery],
    dataset: RetrievalDataset,
    score: Callable[[str, list[str]], list[float]],
    output: Path,
    selection: Selection | None = None,
    shard_size: int = 32,
    show_progress_bar: bool = True,
) -> list[ScoredQuery]:
    """Score every query's candidates with ``score(query_text, document_texts)`` and select them.

    Args:
        mined: Mined candidates (from ``latepool mine``).
        dataset: Texts of the queries and documents.
        score: The teacher's scoring function.
        output: Final output directory; shards are kept in ``<output>.partial`` (``latepool score``
            removes them once the output is saved).
        selection: The selection rules (paper defaults).
        shard_size: Queries per checkpoint shard.
        show_progress_bar: Show progress.

    Returns:
        The selected, scored rows, in mined order.
    """
    selection = selection or Selection()
    corpus = dict(zip(dataset.corpus_ids, dataset.corpus_texts))
    queries = dict(zip(dataset.query_ids, dataset.query_texts))
    missing = [m.query_id for m in mined if m.query_id not in queries]
    if missing:
        raise ValueError(f"{len(missing)} mined queries are not in the dataset's queries (first: {missing[0]!r})")
    partial = output.with_name(output.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    rows: list[ScoredQuery] = []
    progress = tqdm(total=len(mined), desc="Scoring", unit="query", disable=not show_progress_bar)
    for number, start in enumerate(range(0, len(mined), shard_size)):
        shard = partial / f"shard-{number:05d}.jsonl"
        chunk = mined[start : start + shard_size]
        if shard.is_file() and _shard_matches(shard, chunk):
            rows.extend(ScoredQuery(**json.loads(line)) for line in shard.read_text(encoding="utf-8").splitlines())
        else:
            scored = [_score_one(m, queries, corpus, score, selection) for m in chunk]
            temporary = shard.with_suffix(".tmp")
            temporary.write_text("".join(json.dumps(r.__dict__) + "\n" for r in scored), encoding="utf-8")
            os.replace(temporary, shard)
            rows.extend(scored)
        progress.update(len(chunk))
    progress.close()
    return rows


def _shard_matches(shard: Path, chunk: list[MinedQuery]) -> bool:
    ids = [json.loads(line)["query_id"] for line in shard.read_text(encoding="utf-8").splitlines()]
    return ids == [m.query_id for m in chunk]


def _score_one(mined: MinedQuery, queries, corpus, score, selection: Selection) -> ScoredQuery:
    candidates = list(dict.fromkeys(mined.positive_ids + mined.hard_negative_ids + mined.random_negative_ids))
    candidates = [d for d in candidates if d in corpus]
    values = score(queries[mined.query_id], [corpus[d] for d in candidates])
    return select_candidates(mined, dict(zip(candidates, values)), selection)
