"""K-means cluster assignment of document tokens: a batched torch k-means and sklearn's reference.

Both return cluster labels only; :func:`latepool.pooling.batch.cluster_means` turns labels into
pooled vectors, so the two backends differ in the clustering and nowhere else.

The torch backend clusters a whole padded batch at once, each document with its own cluster count:
greedy k-means++ seeding (sklearn's, with ``2 + ln k`` local trials) followed by Lloyd iterations,
with sklearn's stopping rules per document (labels unchanged, or centre shift below
``tol * mean variance``, or the paper's ``max_iter``). Random numbers come from a counter-based hash
of ``(seed, step, trial)``, so a document gets the same clusters whatever batch it is pooled in, on
any device. The only Python loops run over seeding steps and Lloyd iterations, each one batched
over every document.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF


def max_iterations(num_points: float, num_clusters: float) -> int:
    """The paper's Lloyd iteration cap: ``max(min(12 + ceil(6 * log2(max(r, 2))), 50), 20)``, r = n / k.

    Example::

        >>> max_iterations(300, 75)
        24
    """
    ratio = num_points / max(num_clusters, 1)
    return max(min(12 + math.ceil(6 * math.log2(max(ratio, 2))), 50), 20)


def sklearn_kmeans_labels(points: Tensor, num_clusters: int, seed: int = 42) -> Tensor:
    """Cluster one document's tokens with scikit-learn's ``KMeans``, exactly as the paper does.

    Args:
        points: ``(n, dim)`` poolable token embeddings of one document.
        num_clusters: k, at most n.
        seed: ``random_state``.

    Returns:
        ``(n,)`` long labels on the device of ``points``.
    """
    from sklearn.cluster import KMeans

    data = points.detach().float().cpu().numpy()
    kmeans = KMeans(
        n_clusters=num_clusters,
        random_state=seed,
        tol=1e-4,
        max_iter=max_iterations(len(data), num_clusters),
    )
    labels = kmeans.fit_predict(data) if num_clusters < len(data) else np.arange(len(data))
    return torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(points.device)


def _hash_uniform(seed: int, step: Tensor | int, trial: Tensor) -> Tensor:
    """Uniform floats in [0, 1) from a 32-bit integer hash of ``(seed, step, trial)``.

    Counter-based, so a document's random numbers do not depend on its batch or device.
    """
    h = (
        trial.long() * 0x9E3779B1 + torch.as_tensor(step).long() * 0x85EBCA77 + seed * 0xC2B2AE3D + 0x27D4EB2F
    ) & _MASK32
    for multiplier in (0x7FEB352D, 0x846CA68B):
        h = ((h ^ (h >> 16)) * multiplier) & _MASK32
    h = h ^ (h >> 16)
    return (h >> 8).double() / float(1 << 24)


def _kmeans_plus_plus(points: Tensor, valid: Tensor, k: Tensor, seed: int, trials: int | None = None) -> Tensor:
    """Greedy k-means++ seeding (sklearn's, ``2 + ln k`` local trials) for every document at once.

    Documents must come sorted by ``k`` descending: step ``s`` then works on the prefix of documents
    that still need a centre, a view rather than a copy.

    Args:
        points: ``(B, T, D)`` float32 tokens (zero where not valid); ``valid``: ``(B, T)`` bool;
            ``k``: ``(B,)`` clusters, non-increasing.
        trials: Local trials per step for every document; None (the default) is sklearn's
            ``2 + floor(ln k)``. Set only by benchmarks/kmeans_profile.py, which measures what
            fewer trials cost in inertia.

    Returns:
        ``(B, K_max, D)`` initial centres (rows past ``k_i`` are unused).
    """
    batch_size, length, dim = points.shape
    device = points.device
    k_max = int(k[0])
    if trials is None:
        trials = 2 + int(math.log(k_max))
        doc_trials = 2 + torch.log(k.double()).floor().long()  # sklearn's n_local_trials, per document
    else:
        doc_trials = torch.full_like(k, trials)
    trial_ids = torch.arange(trials, device=device)
    skipped_trials = trial_ids[None, :] >= doc_trials[:, None]
    uniforms = _hash_uniform(seed, torch.arange(k_max, device=device)[:, None], trial_ids[None, :]).float()
    active_counts = (k[None, :] > torch.arange(k_max, device=device)[:, None]).sum(dim=1).tolist()
    points_sq = (points * points).sum(dim=-1)
    valid_f = valid.float()
    # Dot products of all token pairs, once: each step gathers its candidates' rows from them.
    gram = torch.bmm(points, points.transpose(1, 2)).view(batch_size * length, length)
    row_offsets = torch.arange(batch_size, device=device)[:, None] * length

    def distances_to(candidates: Tensor) -> Tensor:  # (b, L) token ids -> (b, L, T) squared distances
        b, trials_b = candidates.shape
        rows = gram.index_select(0, (candidates + row_offsets[:b]).flatten()).view(b, trials_b, length)
        candidate_sq = points_sq[:b].gather(1, candidates)
        return (candidate_sq[:, :, None] + points_sq[:b, None, :]).sub_(rows, alpha=2).clamp_(min=0)

    first = _pick_weighted(valid_f, uniforms[0, :1].expand(batch_size, 1))
    chosen = torch.zeros(batch_size, k_max, dtype=torch.long, device=device)
    chosen[:, 0] = first[:, 0]
    closest = distances_to(first)[:, 0] * valid_f
    for step in range(1, k_max):
        b = active_counts[step]  # documents 0..b-1 still need a centre
        closest_b, valid_b = closest[:b], valid_f[:b]
        none_left = closest_b.sum(dim=1, keepdim=True) <= 0  # every point is a centre already
        weights = torch.where(none_left, valid_b, closest_b)
        candidates = _pick_weighted(weights, uniforms[step].expand(b, trials))  # (b, L)
        potential = torch.minimum(closest_b[:, None, :], distances_to(candidates))  # 0 off valid tokens
        total = potential.sum(dim=2).masked_fill_(skipped_trials[:b], float("inf"))
        best = total.argmin(dim=1)
        closest[:b] = potential.gather(1, best[:, None, None].expand(-1, 1, length))[:, 0]
        chosen[:b, step] = candidates.gather(1, best[:, None])[:, 0]
    centers = points.gather(1, chosen[:, :, None].expand(-1, -1, dim))
    return centers


def _pick_weighted(weights: Tensor, uniforms: Tensor) -> Tensor:
    """Sample token indices with probability proportional to ``weights`` by inverse CDF.

    Args:
        weights: ``(B, T)`` non-negative weights, each row with a positive sum.
        uniforms: ``(B, L)`` uniforms in [0, 1).

    Returns:
        ``(B, L)`` long indices of tokens with positive weight.
    """
    cumulative = weights.cumsum(dim=1)
    targets = uniforms * cumulative[:, -1:]  # float32 CDF: a tie at a boundary only shifts to a neighbour
    indices = torch.searchsorted(cumulative, targets.contiguous(), right=True)
    positions = torch.arange(weights.shape[1], device=weights.device)
    last_positive = torch.where(weights > 0, positions, torch.zeros_like(positions)).amax(dim=1, keepdim=True)
    return torch.minimum(indices, last_positive)


def torch_kmeans_labels(points: Tensor, valid: Tensor, k: Tensor, seed: int = 42, tol: float = 1e-4) -> Tensor:
    """Batched k-means: cluster every document's valid tokens into its own number of clusters.

    Args:
        points: ``(B, T, D)`` token embeddings (any float dtype; clustered in float32).
        valid: ``(B, T)`` bool, the tokens to cluster; padding never joins a cluster.
        k: ``(B,)`` long clusters per document, ``1 <= k_i <= valid_i.sum()`` (0 for no valid token).
        seed: Seed of the k-means++ sampling.
        tol: sklearn's relative tolerance on the centre shift.

    Returns:
        ``(B, T)`` long labels in ``[0, k_i)`` for valid tokens (0 elsewhere).

    Example::

        >>> pts = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]])
        >>> torch_kmeans_labels(pts, torch.ones(1, 4, dtype=torch.bool), torch.tensor([2])).tolist()
        [[0, 0, 1, 1]]
    """
    if points.shape[0] == 0:
        return torch.zeros(valid.shape, dtype=torch.long, device=valid.device)
    with torch.no_grad():
        order = torch.argsort(k, descending=True, stable=True)  # seeding works on a shrinking prefix
        x = points.detach()[order].float() * valid[order][:, :, None]
        valid_sorted, k_sorted = valid[order], k[order].clamp(min=1)
        centers = _kmeans_plus_plus(x, valid_sorted, k_sorted, seed)
        labels = _lloyd(x, valid_sorted, k_sorted, centers, tol)
        return torch.empty_like(labels).index_copy_(0, order, labels)


def _lloyd(x: Tensor, valid: Tensor, k: Tensor, centers: Tensor, tol: float) -> Tensor:
    """Lloyd iterations with sklearn's per-document stopping rules; finished documents drop out.

    A document whose labels stopped changing keeps them; one stopped by the centre-shift tolerance
    or the iteration cap gets a last assignment to its final centres, as sklearn does.
    """
    n = valid.sum(dim=1)
    center_valid = torch.arange(centers.shape[1], device=x.device) < k[:, None]
    labels = torch.zeros(valid.shape, dtype=torch.long, device=x.device)
    whole = torch.nonzero(k >= n).flatten()  # a centre per token: nothing to iterate
    labels[whole] = _assign(x[whole], centers[whole], center_valid[whole])
    active = torch.nonzero(k < n).flatten()
    if len(active) == 0:
        return labels * valid
    caps = torch.tensor([max_iterations(a, b) for a, b in zip(n[active].tolist(), k[active].tolist())])
    xa, va, ca, cva, caps = x[active], valid[active], centers[active], center_valid[active], caps.to(x.device)
    tolerance = tol * _mean_variance(xa, va)
    previous = torch.full(va.shape, -1, dtype=torch.long, device=x.device)
    for iteration in range(int(caps.max())):
        current = _assign(xa, ca, cva)
        strict = ((current == previous) | ~va).all(dim=1)
        new_centers = _update_centers(xa, va, current, ca, cva)
        shift = (new_centers - ca).square_().sum(dim=(1, 2))
        done = strict | (shift <= tolerance) | (iteration + 1 >= caps)
        if bool(done.any()):
            moved = done & ~strict  # centres moved since ``current``: assign once more
            current[moved] = _assign(xa[moved], new_centers[moved], cva[moved])
            labels[active[done]] = current[done]
            keep = ~done
            if not bool(keep.any()):
                break
            active, xa, va, cva, caps, tolerance = (t[keep] for t in (active, xa, va, cva, caps, tolerance))
            current, new_centers = current[keep], new_centers[keep]
        previous, ca = current, new_centers
    return labels * valid


def _mean_variance(x: Tensor, valid: Tensor) -> Tensor:
    """sklearn's tolerance scale: the mean over features of each document's per-feature variance."""
    valid_f = valid.float()[:, :, None]
    n = valid_f.sum(dim=1).clamp(min=1)
    mean = (x * valid_f).sum(dim=1) / n
    return ((x - mean[:, None]).square_() * valid_f).sum(dim=(1, 2)) / n[:, 0] / x.shape[-1]


def _assign(x: Tensor, centers: Tensor, center_valid: Tensor) -> Tensor:
    """E-step: index of the nearest valid centre of every token (``||c||^2 - 2 x.c`` suffices)."""
    centers_sq = (centers * centers).sum(dim=-1).masked_fill_(~center_valid, float("inf"))
    return torch.baddbmm(centers_sq[:, None, :], x, centers.transpose(1, 2), alpha=-2).argmin(dim=2)


def _update_centers(x: Tensor, valid: Tensor, labels: Tensor, centers: Tensor, center_valid: Tensor) -> Tensor:
    """One M-step: cluster means, with each empty cluster moved onto the point farthest from its centre."""
    batch_size, length, dim = x.shape
    k_max = centers.shape[1]
    flat = (torch.arange(batch_size, device=x.device)[:, None] * k_max + labels).reshape(-1)
    weights = valid.reshape(-1).float()
    sums = torch.zeros(batch_size * k_max, dim, device=x.device).index_add_(0, flat, x.reshape(-1, dim))
    counts = torch.zeros(batch_size * k_max, device=x.device).index_add_(0, flat, weights)
    new_centers = (sums / counts.clamp(min=1)[:, None]).view(batch_size, k_max, dim)
    counts = counts.view(batch_size, k_max)
    empty = center_valid & (counts == 0)
    if bool(empty.any()):
        own = centers.gather(1, labels[:, :, None].expand(-1, -1, dim))
        far = ((x - own) ** 2).sum(dim=-1).masked_fill_(~valid, -1.0)
        order = far.argsort(dim=1, descending=True)
        rank = (empty.long().cumsum(dim=1) - 1).clamp(min=0).clamp(max=length - 1)
        donors = order.gather(1, rank)
        donor_points = x.gather(1, donors[:, :, None].expand(-1, -1, dim))
        new_centers = torch.where(empty[:, :, None], donor_points, new_centers)
    return new_centers
