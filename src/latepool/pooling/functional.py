"""``pool_documents``: the one pooling entry point that inference, training, evaluation and the index call."""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor
from tqdm.auto import tqdm

from latepool.options import KMEANS_BACKENDS, POOL_METHODS
from latepool.pooling.batch import (
    TokenBatch,
    check_num_protected_tokens,
    check_pool_factor,
    cluster_means,
    num_clusters,
    to_token_batch,
    unpad,
)
from latepool.pooling.hierarchical import hierarchical_labels
from latepool.pooling.kmeans import sklearn_kmeans_labels, torch_kmeans_labels
from latepool.pooling.span import span_labels

PoolMethod = Literal["kmeans", "hierarchical", "span"]
KMeansBackend = Literal["torch", "sklearn"]


@overload
def pool_documents(
    embeddings: list[Tensor],
    *,
    method: PoolMethod,
    pool_factor: float,
    attention_mask: None = ...,
    num_protected_tokens: int = ...,
    normalize_embeddings: bool = ...,
    backend: KMeansBackend = ...,
    seed: int = ...,
) -> list[Tensor]: ...


@overload
def pool_documents(
    embeddings: Tensor,
    *,
    method: PoolMethod,
    pool_factor: float,
    attention_mask: Tensor | None = ...,
    num_protected_tokens: int = ...,
    normalize_embeddings: bool = ...,
    backend: KMeansBackend = ...,
    seed: int = ...,
) -> tuple[Tensor, Tensor]: ...


def pool_documents(
    embeddings: list[Tensor] | Tensor,
    *,
    method: PoolMethod,
    pool_factor: float,
    attention_mask: Tensor | None = None,
    num_protected_tokens: int = 1,
    normalize_embeddings: bool = False,
    backend: KMeansBackend = "torch",
    seed: int = 42,
) -> list[Tensor] | tuple[Tensor, Tensor]:
    """Pool each document's token embeddings into cluster means: ``max(n // pool_factor, 1)`` clusters
    for k-means and hierarchical, ``ceil(n / pool_factor)`` windows for span.

    The first ``num_protected_tokens`` real tokens of each document are kept unchanged and come
    first; the other ``n`` tokens are clustered and each cluster is replaced by the plain mean of its
    tokens (L2-normalized only with ``normalize_embeddings``). A document with at most one poolable
    token, and every document at ``pool_factor=1``, is returned as is. Cluster assignment runs
    without gradient; the means carry gradients to ``embeddings``.

    Args:
        embeddings: A list of ``(n_i, dim)`` tensors, or a padded ``(B, T, dim)`` tensor.
        method: ``"kmeans"``, ``"hierarchical"`` (Ward on cosine distance) or ``"span"``
            (consecutive windows of ``pool_factor`` tokens, the last one partial).
        pool_factor: Keep about ``1 / pool_factor`` of the poolable tokens; >= 1, fractional allowed.
        attention_mask: ``(B, T)`` mask of real tokens, for the padded form only (None: all real).
        num_protected_tokens: Leading real tokens kept unpooled (the ``[CLS]``/``[D]`` marker). Default 1.
        normalize_embeddings: L2-normalize every output vector. Default False (the paper's plain means).
        backend: k-means backend: ``"torch"`` (batched, on the input's device) or ``"sklearn"``
            (the paper's per-document reference). Ignored by the other methods.
        seed: k-means seed (sklearn's ``random_state``).

    Returns:
        The input's form: a list of ``(n_out_i, dim)`` tensors, or ``(pooled, mask)`` with
        ``pooled`` of shape ``(B, T_out, dim)`` and its ``(B, T_out)`` bool mask.

    Example::

        >>> docs = [torch.randn(10, 4), torch.randn(5, 4)]  # 9 and 4 poolable tokens
        >>> [d.shape[0] for d in pool_documents(docs, method="kmeans", pool_factor=4)]
        [3, 2]
        >>> [d.shape[0] for d in pool_documents(docs, method="span", pool_factor=4)]
        [4, 2]
    """
    if method not in POOL_METHODS:
        raise ValueError(f"method must be one of {POOL_METHODS}, got {method!r}.")
    if backend not in KMEANS_BACKENDS:
        raise ValueError(f"backend must be one of {KMEANS_BACKENDS}, got {backend!r}.")
    pool_factor = check_pool_factor(pool_factor)
    check_num_protected_tokens(num_protected_tokens)
    is_list = not isinstance(embeddings, Tensor)
    if _is_empty(embeddings):
        return _empty_like(embeddings, attention_mask)
    batch = to_token_batch(embeddings, attention_mask, num_protected_tokens)
    if pool_factor == 1:
        pooled, mask = batch.embeddings, batch.mask
    else:
        pooled, mask = cluster_means(batch, _cluster_labels(batch, method, pool_factor, backend, seed))
    if normalize_embeddings:
        pooled = _normalize(pooled)
    if is_list:
        return unpad(pooled, mask)
    return pooled, mask


def pool_corpus(
    documents: list[Tensor],
    method: PoolMethod,
    pool_factor: float,
    *,
    num_protected_tokens: int = 1,
    backend: KMeansBackend = "torch",
    seed: int = 42,
    batch_size: int = 256,
    show_progress_bar: bool = True,
) -> list[Tensor]:
    """:func:`pool_documents` over a whole corpus, in batches of documents of similar length.

    The one corpus-pooling helper: the evaluation sweep, the index and the training-time evaluator
    all pool through it. A document gets the same vectors whatever batch it lands in.

    Args:
        documents: ``(n_i, dim)`` token embeddings, one tensor per document.
        method: ``"kmeans"``, ``"hierarchical"`` or ``"span"``.
        pool_factor: The pool factor (1 returns the documents as they are).
        num_protected_tokens: Leading tokens kept unpooled.
        backend: k-means backend.
        seed: k-means seed.
        batch_size: Documents per :func:`pool_documents` call.
        show_progress_bar: Show a progress bar.

    Returns:
        The pooled documents, in the input's order.

    Example::

        >>> docs = [torch.randn(n, 4) for n in (9, 3, 17)]
        >>> [d.shape[0] for d in pool_corpus(docs, "span", 4, batch_size=2, show_progress_bar=False)]
        [3, 2, 5]
    """
    if check_pool_factor(pool_factor) == 1 or not documents:
        return list(documents)
    order = sorted(range(len(documents)), key=lambda i: len(documents[i]))  # similar lengths batch well
    pooled: list[Tensor] = list(documents)
    steps = range(0, len(order), batch_size)
    for start in tqdm(steps, desc=f"Pooling {method} PF{pool_factor:g}", leave=False, disable=not show_progress_bar):
        batch = order[start : start + batch_size]
        outputs = pool_documents(
            [documents[i] for i in batch],
            method=method,
            pool_factor=pool_factor,
            num_protected_tokens=num_protected_tokens,
            backend=backend,
            seed=seed,
        )
        for index, output in zip(batch, outputs):
            pooled[index] = output
    return pooled


def _cluster_labels(batch: TokenBatch, method: str, pool_factor: float, backend: str, seed: int) -> Tensor:
    """Cluster labels of the poolable tokens; documents with nothing to merge keep one token per cluster."""
    labels = batch.poolable.long().cumsum(dim=1) - 1  # identity: one token per cluster
    if method == "span":
        return span_labels(batch.poolable, pool_factor)
    n = batch.num_poolable
    k = num_clusters(n, pool_factor)
    merge = torch.nonzero(k < n).flatten()  # documents that have tokens to merge
    if len(merge) == 0:
        return labels
    points, valid, k = batch.embeddings[merge], batch.poolable[merge], k[merge]
    if method == "hierarchical":
        labels[merge] = hierarchical_labels(points, valid, k)
    elif backend == "torch":
        labels[merge] = torch_kmeans_labels(points, valid, k, seed=seed)
    else:
        for row, (doc, keep, clusters) in enumerate(zip(points, valid, k.tolist())):
            labels[merge[row], keep] = sklearn_kmeans_labels(doc[keep], clusters, seed)
    return labels


def _normalize(embeddings: Tensor) -> Tensor:
    return torch.nn.functional.normalize(embeddings.float(), dim=-1).to(embeddings.dtype)


def _is_empty(embeddings: list[Tensor] | Tensor) -> bool:
    return len(embeddings) == 0 if not isinstance(embeddings, Tensor) or embeddings.ndim == 3 else False


def _empty_like(
    embeddings: list[Tensor] | Tensor, attention_mask: Tensor | None
) -> list[Tensor] | tuple[Tensor, Tensor]:
    if not isinstance(embeddings, Tensor):
        return []
    if attention_mask is not None and len(attention_mask) != 0:
        raise ValueError(f"attention_mask has {len(attention_mask)} rows for an empty batch of embeddings.")
    empty = embeddings.new_zeros((0, 0, embeddings.shape[-1]))
    return empty, torch.zeros((0, 0), dtype=torch.bool, device=embeddings.device)
