"""Span assignment: consecutive windows of about ``pool_factor`` tokens.

A document's ``n`` poolable tokens, in order, are cut into ``k`` consecutive windows of
``floor(n / k)`` or ``ceil(n / k)`` tokens (exactly ``pool_factor`` tokens each when it divides
``n``). No clustering: fully vectorized and free of randomness.
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_labels(valid: Tensor, k: Tensor) -> Tensor:
    """Window labels for every document of a padded batch.

    Args:
        valid: ``(B, T)`` bool, the tokens to pool (need not be contiguous: order is kept).
        k: ``(B,)`` windows per document.

    Returns:
        ``(B, T)`` long labels in ``[0, k_i)`` for valid tokens (0 elsewhere).

    Example::

        >>> span_labels(torch.ones(1, 8, dtype=torch.bool), torch.tensor([2])).tolist()
        [[0, 0, 0, 0, 1, 1, 1, 1]]
    """
    rank = valid.long().cumsum(dim=1) - 1
    n = valid.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.where(valid, rank * k[:, None] // n, torch.zeros_like(rank))
