"""Padded batches of token embeddings: validation, padding, and cluster means.

Every pooling method in latepool reduces to the same two steps: give each token of each document
a cluster label, then replace each cluster by the mean of its tokens. This module holds what the
methods share: turning the caller's input (a list of ``(n_i, dim)`` tensors or a padded
``(B, T, dim)`` tensor with a ``(B, T)`` mask) into one padded batch, counting clusters, and the
label -> mean step, which carries gradients to the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TokenBatch:
    """A padded batch of documents' token embeddings.

    Attributes:
        embeddings: ``(B, T, dim)`` token embeddings; rows where ``mask`` is False are padding.
        mask: ``(B, T)`` bool, True for real tokens (real tokens need not be contiguous).
        protected: ``(B, T)`` bool, True for the leading real tokens kept out of pooling.
        poolable: ``(B, T)`` bool, real tokens that are clustered (``mask & ~protected``).
    """

    embeddings: Tensor
    mask: Tensor
    protected: Tensor
    poolable: Tensor

    @property
    def num_poolable(self) -> Tensor:
        """``(B,)`` long: how many tokens of each document are clustered."""
        return self.poolable.sum(dim=1)


def check_pool_factor(pool_factor: float) -> float:
    """Return ``pool_factor`` as a float, or raise ``ValueError`` when it is not a number >= 1."""
    if isinstance(pool_factor, bool) or not isinstance(pool_factor, (int, float)):
        raise ValueError(f"pool_factor must be a number >= 1, got {pool_factor!r}.")
    if not pool_factor >= 1:  # also rejects NaN
        raise ValueError(f"pool_factor must be >= 1, got {pool_factor!r}.")
    return float(pool_factor)


def check_num_protected_tokens(num_protected_tokens: int) -> int:
    """Return ``num_protected_tokens``, or raise ``ValueError`` when it is not an int >= 0."""
    if isinstance(num_protected_tokens, bool) or not isinstance(num_protected_tokens, int):
        raise ValueError(f"num_protected_tokens must be an int >= 0, got {num_protected_tokens!r}.")
    if num_protected_tokens < 0:
        raise ValueError(f"num_protected_tokens must be >= 0, got {num_protected_tokens}.")
    return num_protected_tokens


def num_clusters(num_poolable: Tensor, pool_factor: float) -> Tensor:
    """Clusters per document: ``max(n // pool_factor, 1)``, or ``n`` itself when ``n <= 1``.

    Args:
        num_poolable: ``(B,)`` long, poolable tokens per document.
        pool_factor: The pool factor (>= 1, fractional allowed).

    Returns:
        ``(B,)`` long cluster counts, never more than ``num_poolable``.

    Example::

        >>> num_clusters(torch.tensor([0, 1, 7, 300]), 4.0)
        tensor([ 0,  1,  1, 75])
    """
    counts = torch.div(num_poolable.double(), pool_factor, rounding_mode="floor").long().clamp(min=1)
    return torch.minimum(counts, num_poolable)


def to_token_batch(
    embeddings: list[Tensor] | Tensor,
    attention_mask: Tensor | None,
    num_protected_tokens: int,
) -> TokenBatch:
    """Validate the caller's embeddings and lay them out as one padded :class:`TokenBatch`.

    Args:
        embeddings: A non-empty list of ``(n_i, dim)`` tensors, or a ``(B, T, dim)`` tensor.
        attention_mask: ``(B, T)`` mask for the padded form (None: every row is real).
        num_protected_tokens: Leading real tokens of each document kept out of pooling.

    Returns:
        The padded batch. Raises ``ValueError`` for wrong dimensions, a mask that does not match,
        or NaN / infinite values.
    """
    if isinstance(embeddings, Tensor):
        if embeddings.ndim != 3:
            raise ValueError(f"embeddings must be a (B, T, dim) tensor, got shape {tuple(embeddings.shape)}.")
        padded = embeddings
        if attention_mask is None:
            mask = torch.ones(padded.shape[:2], dtype=torch.bool, device=padded.device)
        else:
            if tuple(attention_mask.shape) != tuple(padded.shape[:2]):
                raise ValueError(
                    f"attention_mask must have shape {tuple(padded.shape[:2])} to match embeddings "
                    f"{tuple(padded.shape)}, got {tuple(attention_mask.shape)}."
                )
            mask = attention_mask.to(device=padded.device).bool()
    else:
        _check_list(embeddings)
        if attention_mask is not None:
            raise ValueError("attention_mask is only accepted with padded (B, T, dim) embeddings, not a list.")
        padded = torch.nn.utils.rnn.pad_sequence(embeddings, batch_first=True)
        lengths = torch.tensor([len(e) for e in embeddings], device=padded.device)
        mask = torch.arange(padded.shape[1], device=padded.device) < lengths[:, None]
    if not padded.is_floating_point():
        raise ValueError(f"embeddings must be a floating point tensor, got dtype {padded.dtype}.")
    if not torch.isfinite(padded[mask]).all():
        raise ValueError("embeddings contain NaN or infinite values.")
    rank = mask.long().cumsum(dim=1)  # 1-based rank of each real token
    protected = mask & (rank <= num_protected_tokens)
    return TokenBatch(padded, mask, protected, mask & ~protected)


def _check_list(embeddings: list[Tensor]) -> None:
    if not isinstance(embeddings, (list, tuple)):
        raise ValueError(
            f"embeddings must be a list of (n_i, dim) tensors or a (B, T, dim) tensor, got {type(embeddings)}."
        )
    dims = set()
    for index, embedding in enumerate(embeddings):
        if not isinstance(embedding, Tensor) or embedding.ndim != 2:
            shape = tuple(embedding.shape) if isinstance(embedding, Tensor) else type(embedding).__name__
            raise ValueError(f"embeddings[{index}] must be a 2D (n_i, dim) tensor, got {shape}.")
        dims.add(embedding.shape[1])
    if len(dims) > 1:
        raise ValueError(f"all embeddings must share one dimension, got dimensions {sorted(dims)}.")


def cluster_means(batch: TokenBatch, cluster_labels: Tensor) -> tuple[Tensor, Tensor]:
    """Replace each cluster of poolable tokens by its mean; keep protected tokens as they are.

    Protected tokens come first, in order, then one row per non-empty cluster in label order.
    Labels of empty clusters are skipped, so a clustering that leaves a cluster empty yields
    fewer rows rather than a zero row. Gradients flow from the output rows to the embeddings.

    Args:
        batch: The padded documents.
        cluster_labels: ``(B, T)`` long cluster id of each poolable token (ignored elsewhere).

    Returns:
        ``(pooled, mask)``: ``(B, T_out, dim)`` rows (plain means, in the input dtype) and the
        ``(B, T_out)`` bool mask of real rows.
    """
    x, device = batch.embeddings, batch.embeddings.device
    batch_size, length, dim = x.shape
    protected_rank = batch.protected.long().cumsum(dim=1) - 1
    labels = torch.where(batch.poolable, cluster_labels + length, protected_rank)  # protected ids < T <= cluster ids
    slots = 2 * length
    occupied = torch.zeros(batch_size, slots + 1, dtype=torch.bool, device=device)
    labels = torch.where(batch.mask, labels, torch.full_like(labels, slots))
    occupied.scatter_(1, labels, True)
    occupied = occupied[:, :slots]
    dense_id = occupied.long().cumsum(dim=1) - 1  # compact ids, protected first
    num_out = occupied.sum(dim=1)
    width = int(num_out.max()) if batch_size else 0
    token_out = torch.where(batch.mask, dense_id.gather(1, labels.clamp(max=slots - 1)), torch.full_like(labels, width))
    flat = (torch.arange(batch_size, device=device)[:, None] * (width + 1) + token_out).reshape(-1)
    source = x.reshape(-1, dim).float()
    sums = torch.zeros(batch_size * (width + 1), dim, device=device).index_add(0, flat, source)
    counts = torch.zeros(batch_size * (width + 1), device=device).index_add(
        0, flat, torch.ones_like(flat, dtype=torch.float)
    )
    means = (sums / counts.clamp(min=1)[:, None]).view(batch_size, width + 1, dim)[:, :width]
    out_mask = torch.arange(width, device=device) < num_out[:, None]
    return means.to(x.dtype), out_mask


def unpad(embeddings: Tensor, mask: Tensor) -> list[Tensor]:
    """Split a padded ``(B, T, dim)`` tensor into a list of its real rows per document."""
    return [row[keep] for row, keep in zip(embeddings, mask)]
