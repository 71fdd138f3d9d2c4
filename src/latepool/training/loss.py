"""The paper's pooling-aware distillation loss, on sentence-transformers' ``MultiVectorDistillKLDivLoss``.

For every batch one pool factor is drawn (uniformly from ``pool_factors``, reproducible under
``seed``); the candidate documents are pooled with :func:`latepool.pooling.pool_documents` (clusters
chosen without gradient, cluster means carrying it), scored against the query by MaxSim, min-max
normalized per query, and the KL divergence between ``softmax(teacher)`` and ``softmax(student)`` is
minimized. Everything else (forward passes, chunking, the KL itself) is sentence-transformers'.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.multi_vector_encoder import MultiVectorEncoder
from sentence_transformers.multi_vector_encoder.losses import MultiVectorDistillKLDivLoss
from sentence_transformers.multi_vector_encoder.scoring import colbert_kd_scores
from torch import Tensor

from latepool.options import TRAIN_POOL_METHODS
from latepool.pooling import pool_documents
from latepool.pooling.batch import check_pool_factor


def min_max_normalize(scores: Tensor, eps: float = 1e-6) -> Tensor:
    """Rescale each row of ``(Q, N)`` scores to [0, 1] (the paper's per-query normalization).

    Example::

        >>> min_max_normalize(torch.tensor([[2.0, 4.0, 3.0]])).tolist()
        [[0.0, 1.0, 0.5]]
    """
    low = scores.min(dim=-1, keepdim=True).values
    high = scores.max(dim=-1, keepdim=True).values
    return (scores - low) / (high - low).clamp(min=eps)


class PooledMaxSimScores:
    """``similarity_fct`` for the KD loss: pool the documents with a freshly drawn factor, then MaxSim.

    Args:
        pool_method: ``kmeans``, ``hierarchical``, ``span``, or ``none`` (no pooling).
        pool_factors: Factors to draw from, uniformly, one per call (= per batch).
        normalize_scores: Min-max normalize each query's scores.
        seed: Seed of the pool-factor draws (and of k-means).
        num_protected_tokens: Leading document tokens kept unpooled.
        backend: k-means backend.

    Attributes:
        last_pool_factor: The factor drawn for the latest batch.

    The draws restart from ``seed`` when a run resumes from a checkpoint (the trainer restores the
    model, optimizer and data order, not this generator).
    """

    def __init__(
        self,
        pool_method: str = "kmeans",
        pool_factors: Sequence[float] = (1, 2, 3, 4, 5, 6),
        *,
        normalize_scores: bool = True,
        seed: int = 42,
        num_protected_tokens: int = 1,
        backend: str = "torch",
    ) -> None:
        if pool_method not in TRAIN_POOL_METHODS:
            raise ValueError(f"pool_method must be one of {TRAIN_POOL_METHODS}, got {pool_method!r}")
        if not pool_factors:
            raise ValueError("pool_factors must not be empty")
        self.pool_method = pool_method
        self.pool_factors = [check_pool_factor(f) for f in pool_factors]
        self.normalize_scores = normalize_scores
        self.seed = seed
        self.num_protected_tokens = num_protected_tokens
        self.backend = backend
        self._random = random.Random(seed)
        self.last_pool_factor = 1.0

    def draw_pool_factor(self) -> float:
        """The next batch's pool factor (uniform over :attr:`pool_factors`)."""
        self.last_pool_factor = self._random.choice(self.pool_factors)
        return self.last_pool_factor

    def pool(self, documents: Tensor, documents_mask: Tensor, pool_factor: float) -> tuple[Tensor, Tensor]:
        """Pool ``(Q, N, T, D)`` documents under their ``(Q, N, T)`` mask; returns the same layout."""
        if self.pool_method == "none" or pool_factor == 1:
            return documents, documents_mask
        queries, ways, length, dim = documents.shape
        pooled, mask = pool_documents(
            documents.reshape(queries * ways, length, dim),
            attention_mask=documents_mask.reshape(queries * ways, length),
            method=self.pool_method,
            pool_factor=pool_factor,
            num_protected_tokens=self.num_protected_tokens,
            backend=self.backend,
            seed=self.seed,
        )
        return pooled.view(queries, ways, -1, dim), mask.view(queries, ways, -1)

    def __call__(
        self,
        queries_embeddings: Tensor,
        documents_embeddings: Tensor,
        queries_mask: Tensor | None = None,
        documents_mask: Tensor | None = None,
    ) -> Tensor:
        if documents_mask is None:
            documents_mask = torch.ones(
                documents_embeddings.shape[:3], dtype=torch.bool, device=documents_embeddings.device
            )
        documents, mask = self.pool(documents_embeddings, documents_mask.bool(), self.draw_pool_factor())
        scores = colbert_kd_scores(queries_embeddings, documents, queries_mask=queries_mask, documents_mask=mask)
        return min_max_normalize(scores) if self.normalize_scores else scores


class PoolingDistillKLDivLoss(MultiVectorDistillKLDivLoss):
    """KL distillation with documents pooled inside the loss (the paper's training objective).

    Args:
        model: The student ``MultiVectorEncoder``.
        pool_method: ``kmeans`` (the paper's), ``hierarchical``, ``span`` or ``none``.
        pool_factors: One factor drawn uniformly per batch. Default 1-6.
        normalize_scores: Min-max normalize student scores per query before the softmax. Default True.
        seed: Seed of the draws.
        temperature: Softmax temperature for both sides (sentence-transformers' meaning).
        teacher_temperature: Teacher-side override (e.g. 0.05 for a bi-encoder's cosine scores).
        mini_batch_size: Rows per forward pass (sentence-transformers' meaning).

    Example::

        loss = PoolingDistillKLDivLoss(model, pool_method="kmeans", pool_factors=[1, 2, 3, 4, 5, 6])
        trainer = MultiVectorEncoderTrainer(model=model, train_dataset=dataset, loss=loss)
    """

    def __init__(
        self,
        model: MultiVectorEncoder,
        *,
        pool_method: str = "kmeans",
        pool_factors: Sequence[float] = (1, 2, 3, 4, 5, 6),
        normalize_scores: bool = True,
        seed: int = 42,
        temperature: float = 1.0,
        teacher_temperature: float | None = None,
        mini_batch_size: int | None = None,
    ) -> None:
        scores = PooledMaxSimScores(pool_method, pool_factors, normalize_scores=normalize_scores, seed=seed)
        super().__init__(
            model,
            similarity_fct=scores,
            temperature=temperature,
            teacher_temperature=teacher_temperature,
            mini_batch_size=mini_batch_size,
        )
        self.pooled_scores = scores

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config.update(
            similarity_fct="latepool.training.loss.PooledMaxSimScores",
            pool_method=self.pooled_scores.pool_method,
            pool_factors=self.pooled_scores.pool_factors,
            normalize_scores=self.pooled_scores.normalize_scores,
            seed=self.pooled_scores.seed,
        )
        return config
