"""The pooling core: semantics, counts, backends, gradients, input forms and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latepool.pooling import pool_documents
from latepool.pooling.batch import cluster_means, num_clusters, to_token_batch
from latepool.pooling.kmeans import max_iterations, sklearn_kmeans_labels, torch_kmeans_labels
from latepool.pooling.span import span_labels

METHODS = ("kmeans", "hierarchical", "span")


def expected_count(n: int, pool_factor: float, protected: int, method: str = "kmeans") -> int:
    kept = min(protected, n)
    poolable = n - kept
    if poolable <= 1:
        return kept + poolable
    if method == "span":
        return kept + math.floor((poolable - 1) / pool_factor) + 1
    return kept + max(int(poolable // pool_factor), 1)


def normalized(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1)


def test_span_paper_test_case() -> None:
    # The paper's reference test: rows [100, 1, 3, 5, 7, 9], PF2, one protected token ->
    # windows [1, 3], [5, 7], [9] and the protected row: {[2,2], [6,6], [9,9], [100,100]}.
    # latepool keeps the protected row first (MaxSim does not depend on row order).
    doc = torch.tensor([100.0, 1, 3, 5, 7, 9])[:, None].repeat(1, 2)
    pooled = pool_documents([doc], method="span", pool_factor=2, num_protected_tokens=1)[0]
    assert pooled.tolist() == [[100.0, 100.0], [2.0, 2.0], [6.0, 6.0], [9.0, 9.0]]


def test_span_hand_computed_means() -> None:
    doc = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2)  # rows 0..9
    pooled = pool_documents([doc], method="span", pool_factor=4)[0]
    # protected row 0, then windows [1..4], [5..8] and the partial [9]: ceil(9 / 4) = 3 windows
    assert pooled.tolist() == [[0.0, 0.0], [2.5, 2.5], [6.5, 6.5], [9.0, 9.0]]


def test_span_partial_and_fractional_windows() -> None:
    assert span_labels(torch.ones(1, 10, dtype=torch.bool), 4).tolist() == [[0] * 4 + [1] * 4 + [2] * 2]
    doc = torch.arange(7, dtype=torch.float32)[:, None]
    pooled = pool_documents([doc], method="span", pool_factor=1.5, num_protected_tokens=0)[0]
    assert pooled.shape[0] == 5  # token i -> window floor(i / 1.5)
    assert pooled[:, 0].tolist() == [0.5, 2.0, 3.5, 5.0, 6.0]  # windows {0,1} {2} {3,4} {5} {6}, in order


def test_kmeans_separated_clusters_hand_computed() -> None:
    cls = torch.tensor([[9.0, 9.0]])
    a = torch.tensor([[0.0, 0.0], [0.0, 0.2]])
    b = torch.tensor([[5.0, 5.0], [5.0, 5.4]])
    doc = torch.cat([cls, a[:1], b[:1], a[1:], b[1:]])
    for backend in ("torch", "sklearn"):
        pooled = pool_documents([doc], method="kmeans", pool_factor=2, backend=backend)[0]
        assert pooled[0].tolist() == [9.0, 9.0]  # protected token first, unchanged
        rows = pooled[1:][pooled[1:, 0].argsort()]
        assert torch.allclose(rows, torch.tensor([[0.0, 0.1], [5.0, 5.2]]))


def test_hierarchical_hand_computed() -> None:
    doc = torch.nn.functional.normalize(
        torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.99, 0.05], [0.02, 1.0]]), dim=-1
    )
    pooled = pool_documents([doc], method="hierarchical", pool_factor=2)[0]
    expected = [torch.stack([doc[1], doc[3]]).mean(0), torch.stack([doc[2], doc[4]]).mean(0)]
    assert pooled.shape[0] == 3
    for row in pooled[1:]:
        assert any(torch.allclose(row, e) for e in expected)


def test_hierarchical_matches_sentence_transformers() -> None:
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling as STHierarchical

    docs = [normalized(n, 16, seed=n) for n in (2, 5, 31, 64)]
    for pool_factor in (1.5, 2, 3, 4):
        reference = STHierarchical(pool_factor, normalize_embeddings=False).pool(docs)
        ours = pool_documents(docs, method="hierarchical", pool_factor=pool_factor)
        for expected, actual in zip(reference, ours):
            assert torch.allclose(actual, expected, atol=1e-6)


def test_pool_factor_one_returns_input() -> None:
    docs = [normalized(7, 8), normalized(3, 8, seed=1)]
    for method in METHODS:
        pooled = pool_documents(docs, method=method, pool_factor=1)
        assert all(torch.equal(a, b) for a, b in zip(pooled, docs))


def test_short_documents_are_returned_as_is() -> None:
    docs = [normalized(1, 4), normalized(2, 4, seed=1), normalized(0, 4)]
    for method in METHODS:
        pooled = pool_documents(docs, method=method, pool_factor=4)
        assert all(torch.equal(a, b) for a, b in zip(pooled, docs))


def test_normalize_embeddings() -> None:
    docs = [normalized(20, 8)]
    plain = pool_documents(docs, method="span", pool_factor=4)[0]
    unit = pool_documents(docs, method="span", pool_factor=4, normalize_embeddings=True)[0]
    assert plain[1:].norm(dim=-1).max() < 1  # plain means of unit vectors are shorter
    assert torch.allclose(unit.norm(dim=-1), torch.ones(len(unit)))
    assert torch.allclose(unit, torch.nn.functional.normalize(plain, dim=-1))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    pool_factor=st.one_of(st.integers(1, 7), st.floats(1.0, 6.5)),
    protected=st.integers(0, 3),
    method=st.sampled_from(METHODS),
)
def test_output_counts(lengths: list[int], pool_factor: float, protected: int, method: str) -> None:
    docs = [normalized(n, 6, seed=i) for i, n in enumerate(lengths)]
    pooled = pool_documents(docs, method=method, pool_factor=pool_factor, num_protected_tokens=protected)
    assert [len(p) for p in pooled] == [expected_count(n, pool_factor, protected, method) for n in lengths]
    for doc, out in zip(docs, pooled):
        kept = min(protected, len(doc))
        assert torch.equal(out[:kept], doc[:kept])


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(2, 30), min_size=1, max_size=4),
    pool_factor=st.floats(1.2, 6.0),
    method=st.sampled_from(METHODS),
)
def test_cluster_means_preserve_each_cluster_sum(lengths: list[int], pool_factor: float, method: str) -> None:
    docs = [normalized(n, 5, seed=n) for n in lengths]
    batch = to_token_batch(docs, None, 1)
    from latepool.pooling.functional import _cluster_labels

    labels = _cluster_labels(batch, method, pool_factor, "torch", 42)
    pooled, mask = cluster_means(batch, labels)
    for i, doc in enumerate(docs):
        doc_labels = labels[i, 1 : len(doc)]
        clusters = doc_labels.unique()  # sorted, as the output rows
        assert int(mask[i].sum()) == 1 + len(clusters)
        for row, cluster in enumerate(clusters.tolist(), start=1):
            members = doc[1:][doc_labels == cluster]
            assert torch.allclose(pooled[i, row] * len(members), members.sum(dim=0), atol=1e-5)


def test_torch_and_sklearn_kmeans_agree_on_separated_clusters() -> None:
    generator = torch.Generator().manual_seed(3)
    centers = torch.randn(6, 8, generator=generator) * 10
    points = centers.repeat_interleave(5, dim=0) + 0.01 * torch.randn(30, 8, generator=generator)
    points = points[torch.randperm(30, generator=generator)]
    torch_labels = torch_kmeans_labels(points[None], torch.ones(1, 30, dtype=torch.bool), torch.tensor([6]))[0]
    sklearn_labels = sklearn_kmeans_labels(points, 6)
    # same partition up to renaming: the label pairs form a bijection
    pairs = set(zip(torch_labels.tolist(), sklearn_labels.tolist()))
    assert len(pairs) == 6 and len({a for a, _ in pairs}) == 6 and len({b for _, b in pairs}) == 6


def inertia(points: torch.Tensor, labels: torch.Tensor) -> float:
    return sum(float(((points[labels == c] - points[labels == c].mean(0)) ** 2).sum()) for c in labels.unique())


def test_torch_kmeans_inertia_matches_sklearn_on_real_embeddings(
    minilm_document_embeddings: list[torch.Tensor],
) -> None:
    docs = [d[1:] for d in minilm_document_embeddings]  # poolable tokens
    batch = to_token_batch(docs, None, 0)
    for pool_factor in (2, 4, 6):
        k = num_clusters(batch.num_poolable, pool_factor)
        labels = torch_kmeans_labels(batch.embeddings, batch.poolable, k)
        ours = [inertia(d, labels[i, : len(d)]) for i, d in enumerate(docs)]
        reference = [inertia(d, sklearn_kmeans_labels(d, int(k[i]))) for i, d in enumerate(docs)]
        ratio = sum(ours) / sum(reference)
        assert ratio <= 1.02, f"PF{pool_factor}: torch inertia {ratio:.4f}x sklearn's"


def test_torch_kmeans_stops_at_a_lloyd_fixed_point(minilm_document_embeddings: list[torch.Tensor]) -> None:
    """Every token ends with its nearest cluster mean, for every cluster count (k = n included)."""
    docs = [d[1:] for d in minilm_document_embeddings]
    batch = to_token_batch(docs, None, 0)
    for pool_factor in (1, 2, 4):
        k = num_clusters(batch.num_poolable, pool_factor)
        labels = torch_kmeans_labels(batch.embeddings, batch.poolable, k)
        for i, doc in enumerate(docs):
            doc_labels = labels[i, : len(doc)]
            assert sorted(doc_labels.unique().tolist()) == list(range(int(k[i])))  # no empty cluster
            means = torch.zeros(int(k[i]), doc.shape[1]).index_add_(0, doc_labels, doc)
            means /= torch.bincount(doc_labels)[:, None]
            distances = torch.cdist(doc, means) ** 2
            own = distances.gather(1, doc_labels[:, None])[:, 0]
            assert bool((own <= distances.min(dim=1).values + 1e-5).all()), f"document {i}, PF{pool_factor}"


def test_torch_kmeans_stopped_by_tolerance_assigns_to_its_final_centres() -> None:
    """A huge tol stops Lloyd after one step; like sklearn, the labels then follow the moved centres."""
    from latepool.pooling.kmeans import _kmeans_plus_plus

    points, valid, k = normalized(1, 40, 8, seed=5), torch.ones(1, 40, dtype=torch.bool), torch.tensor([10])
    seeds = _kmeans_plus_plus(points, valid, k, seed=42)[0]
    first = torch.cdist(points[0], seeds).argmin(dim=1)
    means = torch.zeros(10, 8).index_add_(0, first, points[0]) / torch.bincount(first, minlength=10)[:, None]
    expected = torch.cdist(points[0], means).argmin(dim=1)
    assert not torch.equal(first, expected)  # the last assignment matters here
    assert torch.equal(torch_kmeans_labels(points, valid, k, tol=1e9)[0], expected)


def test_kmeans_result_does_not_depend_on_the_batch() -> None:
    docs = [normalized(n, 8, seed=n) for n in (40, 17, 63, 5)]
    together = pool_documents(docs, method="kmeans", pool_factor=3)
    alone = [pool_documents([d], method="kmeans", pool_factor=3)[0] for d in docs]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(together, alone))
    again = pool_documents(docs, method="kmeans", pool_factor=3)
    assert all(torch.equal(a, b) for a, b in zip(together, again))
    other_seed = pool_documents(docs, method="kmeans", pool_factor=3, seed=7)
    assert [len(d) for d in other_seed] == [len(d) for d in together]


@pytest.mark.parametrize("method", METHODS)
def test_gradients_flow_through_cluster_means(method: str) -> None:
    docs = [normalized(12, 4, seed=1).requires_grad_(), normalized(7, 4, seed=2).requires_grad_()]
    pooled = pool_documents(docs, method=method, pool_factor=3)
    sum(p.sum() for p in pooled).backward()
    for doc in docs:
        assert doc.grad is not None and doc.grad.abs().sum() > 0
    padded = torch.stack([normalized(9, 4, seed=3), normalized(9, 4, seed=4)]).requires_grad_()
    out, mask = pool_documents(padded, method=method, pool_factor=2)
    (out * mask[..., None]).pow(2).sum().backward()
    assert padded.grad.abs().sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_padded_and_list_inputs_agree(method: str) -> None:
    docs = [normalized(n, 6, seed=n) for n in (11, 4, 25)]
    padded = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True)
    mask = torch.arange(padded.shape[1]) < torch.tensor([11, 4, 25])[:, None]
    from_list = pool_documents(docs, method=method, pool_factor=3)
    out, out_mask = pool_documents(padded, attention_mask=mask, method=method, pool_factor=3)
    assert out_mask.sum(dim=1).tolist() == [len(p) for p in from_list]
    for i, expected in enumerate(from_list):
        assert torch.allclose(out[i, out_mask[i]], expected, atol=1e-6)


def test_padded_mask_with_holes_pools_only_real_tokens() -> None:
    doc = normalized(10, 4)
    mask = torch.tensor([[True, True, False, True, True, False, True, True, True, True]])
    out, out_mask = pool_documents(doc[None], attention_mask=mask, method="span", pool_factor=2)
    real = doc[mask[0]]
    expected = pool_documents([real], method="span", pool_factor=2)[0]
    assert torch.allclose(out[0, out_mask[0]], expected)


def test_half_precision_keeps_dtype() -> None:
    docs = [normalized(20, 8).half()]
    for method in METHODS:
        assert pool_documents(docs, method=method, pool_factor=4)[0].dtype == torch.float16


def test_empty_batches() -> None:
    assert pool_documents([], method="kmeans", pool_factor=2) == []
    out, mask = pool_documents(torch.zeros(0, 5, 8), method="kmeans", pool_factor=2)
    assert out.shape == (0, 0, 8) and mask.shape == (0, 0)


def test_max_iterations_formula() -> None:
    for n, k in [(300, 150), (300, 75), (300, 50), (10, 1), (1000, 10)]:
        r = n / k
        assert max_iterations(n, k) == max(min(12 + math.ceil(6 * math.log2(max(r, 2))), 50), 20)
    assert num_clusters(torch.tensor([0, 1, 7, 300]), 4.0).tolist() == [0, 1, 1, 75]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pool_factor": 0.5}, "pool_factor"),
        ({"pool_factor": float("nan")}, "pool_factor"),
        ({"pool_factor": "2"}, "pool_factor"),
        ({"num_protected_tokens": -1}, "num_protected_tokens"),
        ({"method": "median"}, "method"),
        ({"backend": "faiss"}, "backend"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    arguments = {"method": "kmeans", "pool_factor": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        pool_documents([normalized(5, 4)], **arguments)


def test_bad_embeddings() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        pool_documents([torch.tensor([[1.0, float("nan")], [0.0, 1.0]])], method="span", pool_factor=2)
    with pytest.raises(ValueError, match="infinite"):
        pool_documents(torch.full((1, 3, 2), float("inf")), method="span", pool_factor=2)
    with pytest.raises(ValueError, match=r"embeddings\[1\] must be a 2D"):
        pool_documents([normalized(4, 3), torch.zeros(3)], method="span", pool_factor=2)
    with pytest.raises(ValueError, match="one dimension"):
        pool_documents([normalized(4, 3), normalized(4, 5)], method="span", pool_factor=2)
    with pytest.raises(ValueError, match=r"\(B, T, dim\)"):
        pool_documents(torch.zeros(4, 3), method="span", pool_factor=2)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        pool_documents(torch.zeros(2, 4, 3), attention_mask=torch.ones(2, 5), method="span", pool_factor=2)
    with pytest.raises(ValueError, match="floating point"):
        pool_documents([torch.zeros(4, 3, dtype=torch.long)], method="span", pool_factor=2)
