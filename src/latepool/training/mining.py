"""``latepool mine``: hard and random negatives for every training query, from a dense bi-encoder.

For each query with at least one positive (grade > 0), the corpus is ranked by cosine similarity
with a sentence-transformers bi-encoder; the best-ranked documents that are not positives are the
hard negatives, and random negatives are drawn from the rest with a generator seeded by
``(seed, crc32(query_id))``, so the draw does not depend on Python's hash seed or on query order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from latepool.data import RetrievalDataset


@dataclass
class MinedQuery:
    """Candidates of one training query (document ids)."""

    query_id: str
    positive_ids: list[str]
    hard_negative_ids: list[str]
    random_negative_ids: list[str]


def load_retriever(name: str, device: str | None = None):
    """A dense bi-encoder: ``minilm`` (bundled all-MiniLM-L6-v2), a local directory or a hub id."""
    from sentence_transformers import SentenceTransformer

    from latepool.models import MINILM_ALIASES, minilm_path

    path = str(minilm_path()) if name.lower() in MINILM_ALIASES else name
    return SentenceTransformer(path, device=device)


def mine_negatives(
    dataset: RetrievalDataset,
    retriever,
    *,
    hard_negatives: int = 100,
    random_negatives: int = 50,
    seed: int = 42,
    batch_size: int = 64,
    query_chunk: int = 256,
    show_progress_bar: bool = True,
) -> list[MinedQuery]:
    """Mine negatives for every query of ``dataset`` that has a positive.

    Args:
        dataset: The training split (queries, corpus, qrels).
        retriever: A ``SentenceTransformer`` bi-encoder.
        hard_negatives: Top-ranked non-positive documents kept per query.
        random_negatives: Random documents (neither positive nor hard) per query.
        seed: Seed of the random negatives.
        batch_size: Encoding batch size.
        query_chunk: Queries ranked per matrix product.
        show_progress_bar: Show encoding progress.

    Returns:
        One :class:`MinedQuery` per query with a positive, in the dataset's query order.

    Example::

        mined = mine_negatives(load_dataset("../shared/data/scifact", "train"), load_retriever("minilm"))
    """
    if hard_negatives < 0 or random_negatives < 0:
        raise ValueError("hard_negatives and random_negatives must be >= 0")
    index = {doc_id: i for i, doc_id in enumerate(dataset.corpus_ids)}
    selected = [
        (position, query_id)
        for position, query_id in enumerate(dataset.query_ids)
        if any(grade > 0 and doc in index for doc, grade in dataset.qrels[query_id].items())
    ]
    if not selected:
        raise ValueError(f"{dataset.name}: no query has a positive document in the corpus")
    corpus = retriever.encode(
        dataset.corpus_texts,
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
        show_progress_bar=show_progress_bar,
    )
    query_texts = [dataset.query_texts[position] for position, _ in selected]
    queries = retriever.encode(query_texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    results: list[MinedQuery] = []
    for start in tqdm(range(0, len(selected), query_chunk), desc="Mining", disable=not show_progress_bar):
        scores = queries[start : start + query_chunk] @ corpus.T
        for row, (_, query_id) in zip(scores, selected[start : start + query_chunk]):
            results.append(_mine_one(query_id, row, dataset, index, hard_negatives, random_negatives, seed))
    return results


def _mine_one(query_id, scores, dataset, index, hard_count, random_count, seed) -> MinedQuery:
    positives = [doc for doc, grade in dataset.qrels[query_id].items() if grade > 0 and doc in index]
    positive_rows = {index[doc] for doc in positives}
    depth = min(hard_count + len(positive_rows), len(scores))
    ranked = torch.topk(scores, depth).indices.tolist()
    hard = [row for row in ranked if row not in positive_rows][:hard_count]
    taken = positive_rows | set(hard)
    rest = np.array([row for row in range(len(scores)) if row not in taken], dtype=np.int64)
    generator = np.random.default_rng([seed, zlib.crc32(query_id.encode("utf-8"))])
    drawn = generator.choice(rest, size=min(random_count, len(rest)), replace=False) if len(rest) else []
    ids = dataset.corpus_ids
    return MinedQuery(query_id, positives, [ids[r] for r in hard], [ids[int(r)] for r in drawn])
