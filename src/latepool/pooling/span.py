"""Span assignment: consecutive windows of exactly ``pool_factor`` tokens, the last one partial.

This is the paper's span pooling: a document's ``n`` poolable tokens, in order, are cut into
windows of ``pool_factor`` tokens, and whatever is left at the end forms one more, shorter window
(5 tokens at pool factor 2 -> windows ``[0, 1], [2, 3], [4]``: ``ceil(n / pool_factor)`` windows).
Token ``i`` goes to window ``floor(i / pool_factor)``, which also defines fractional pool factors.
No clustering: fully vectorized and free of randomness.
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_labels(valid: Tensor, pool_factor: float) -> Tensor:
    """Window labels for every document of a padded batch.

    Args:
        valid: ``(B, T)`` bool, the tokens to pool (need not be contiguous: order is kept).
        pool_factor: Tokens per window (>= 1); the last window of a document may be shorter.

    Returns:
        ``(B, T)`` long labels ``floor(rank / pool_factor)`` for valid tokens (0 elsewhere), where
        ``rank`` counts a document's valid tokens from 0.

    Example::

        >>> span_labels(torch.ones(1, 5, dtype=torch.bool), 2).tolist()
        [[0, 0, 1, 1, 2]]
    """
    rank = valid.long().cumsum(dim=1) - 1
    windows = torch.div(rank.double(), float(pool_factor), rounding_mode="floor").long()
    return torch.where(valid, windows, torch.zeros_like(rank))
