"""Ward hierarchical cluster assignment of document tokens, as sentence-transformers and PyLate do it.

Ward linkage over the condensed cosine distance matrix ``1 - X.X^T`` (clipped to ``[0, 2]``), cut
into ``k`` clusters with ``fcluster(criterion="maxclust")``. The distance matrices of a batch are
computed with one batched matrix product on the embeddings' device; the linkage itself runs per
document in C (fastcluster when installed, scipy otherwise: sentence-transformers' choice).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

_DISTANCE_CHUNK = 64  # documents per batched distance product


@functools.cache
def ward_linkage() -> Callable[..., np.ndarray]:
    """The Ward linkage function: fastcluster's when installed, scipy's otherwise (resolved once).

    The same choice as sentence-transformers' ``HierarchicalTokenPooling``, so both give the same clusters.
    """
    try:
        from fastcluster import linkage
    except (ImportError, OSError, RuntimeError):
        from scipy.cluster.hierarchy import linkage
    return linkage


def ward_labels(points: Tensor, num_clusters: int) -> np.ndarray:
    """Ward clusters of one document from its ``(n, dim)`` token embeddings.

    Args:
        points: ``(n, dim)`` float32 CPU tensor.
        num_clusters: k, ``1 <= k < n``.

    Returns:
        ``(n,)`` int64 labels in ``[0, k')`` with ``k' <= k`` (fewer only on exact ties).
    """
    from scipy.cluster.hierarchy import fcluster  # imported here: searching an index never needs scipy
    from scipy.spatial.distance import squareform

    distances = (1 - points @ points.T).clamp_(0, 2).numpy()
    linkage = ward_linkage()(squareform(distances, checks=False), method="ward")
    labels = fcluster(linkage, t=num_clusters, criterion="maxclust") - 1
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def hierarchical_labels(points: Tensor, valid: Tensor, k: Tensor) -> Tensor:
    """Ward cluster labels for every document of a padded batch.

    Args:
        points: ``(B, T, D)`` token embeddings.
        valid: ``(B, T)`` bool, the tokens to cluster.
        k: ``(B,)`` clusters per document.

    Returns:
        ``(B, T)`` long labels in ``[0, k_i)`` for valid tokens (0 elsewhere), on the input's device.

    Example::

        >>> pts = torch.nn.functional.normalize(torch.tensor([[[1.0, 0], [0.9, 0.1], [0, 1.0]]]), dim=-1)
        >>> hierarchical_labels(pts, torch.ones(1, 3, dtype=torch.bool), torch.tensor([2])).tolist()
        [[0, 0, 1]]
    """
    labels = torch.zeros(valid.shape, dtype=torch.long)
    valid_cpu, k_list = valid.cpu(), k.tolist()
    n_list = valid_cpu.sum(dim=1).tolist()
    with torch.no_grad():
        for start in range(0, len(points), _DISTANCE_CHUNK):
            chunk = points[start : start + _DISTANCE_CHUNK].detach().float().cpu()
            for offset, doc in enumerate(chunk):
                index = start + offset
                if k_list[index] >= n_list[index]:
                    continue
                keep = valid_cpu[index]
                labels[index, keep] = torch.from_numpy(ward_labels(doc[keep], k_list[index]))
    return labels.to(points.device)
