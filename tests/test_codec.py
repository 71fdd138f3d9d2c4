"""Residual coding of index vectors: bit packing, decode error bounds, search parity, bytes per vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latepool.index import Index
from latepool.index import codec as codec_module
from latepool.index.codec import Codec, pack_buckets
from latepool.index.storage import bytes_per_vector
from latepool.pooling import pool_corpus
from latepool.scoring import PackedDocuments, maxsim_topk

SETTINGS = {"model": "", "model_hash": "", "query_length": 8, "document_length": 32, "pool_method": "kmeans"}


def clustered_vectors(count: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    """Vectors around 40 directions, like token embeddings (unit norm), then scaled like pooled means."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(40, dim, generator=generator), dim=-1)
    picks = centers[torch.randint(0, 40, (count,), generator=generator)]
    vectors = torch.nn.functional.normalize(picks + 0.3 * torch.randn(count, dim, generator=generator), dim=-1)
    return vectors * (0.6 + 0.4 * torch.rand(count, 1, generator=generator))


def unpack_buckets(packed: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """The inverse of ``pack_buckets``, written independently of the codec's lookup table."""
    planes = np.unpackbits(packed, axis=1, bitorder="little").reshape(len(packed), dim, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(axis=2).astype(np.uint8)


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from([1, 2, 4]), rows=st.integers(0, 7), words=st.integers(1, 4), seed=st.integers(0, 99))
def test_bucket_packing_round_trips(bits: int, rows: int, words: int, seed: int) -> None:
    dim = 8 * words
    buckets = np.random.default_rng(seed).integers(0, 2**bits, size=(rows, dim), dtype=np.uint8)
    packed = pack_buckets(buckets, bits)
    assert packed.shape == (rows, dim * bits // 8) and packed.dtype == np.uint8
    assert np.array_equal(unpack_buckets(packed, bits, dim), buckets)


def test_decode_error_is_bounded_by_the_buckets_and_shrinks_with_bits() -> None:
    vectors = clustered_vectors(6000)
    errors = {}
    for bits in (1, 2, 4):
        codec = Codec.train(vectors, num_centroids=64, bits=bits)
        codes, residuals = codec.encode(vectors)
        decoded = codec.decode(codes, residuals)
        residual = vectors - codec.centroids[torch.from_numpy(codes.astype(np.int64))]
        bucket = torch.bucketize(residual, codec.cutoffs)
        error = (decoded - vectors).abs()
        inner = (bucket > 0) & (bucket < 2**bits - 1)  # buckets with two cutoffs: the weight lies between them
        if inner.any():
            width = (codec.cutoffs[bucket.clamp(max=2**bits - 2)] - codec.cutoffs[(bucket - 1).clamp(min=0)])[inner]
            assert (error[inner] <= width + 1e-6).all()
        assert torch.equal(decoded, codec.decode(codes, residuals))  # deterministic
        errors[bits] = float((decoded - vectors).norm(dim=1).mean())
        errors[f"centroid-{bits}"] = float(residual.norm(dim=1).mean())
    assert errors[4] < errors[2] < errors[1] < errors["centroid-1"]
    assert errors[4] < 0.2 * errors["centroid-4"]  # 4 bits leave under a fifth of the centroid-only error


@pytest.mark.parametrize("dtype", ["residual4", "residual2", "residual1"])
def test_exact_search_over_a_residual_index_equals_maxsim_over_its_decoded_vectors(dtype: str, tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    documents = [
        clustered_vectors(int(n), seed=i) for i, n in enumerate(torch.randint(3, 30, (150,), generator=generator))
    ]
    ids = [f"d{i}" for i in range(len(documents))]
    index = Index.from_documents(tmp_path / dtype, ids, documents, {**SETTINGS, "pool_factor": 1, "dtype": dtype})
    decoded = dict(zip(*[sum(parts, []) for parts in zip(*index.documents(batch_size=40))]))
    assert list(decoded) == ids
    queries = [clustered_vectors(8, seed=100 + i) for i in range(5)]
    scores, indices = maxsim_topk(queries, PackedDocuments.pack([decoded[i] for i in ids]), 10)
    hits = index.search_embeddings(queries, 10, candidates=False)
    for row, row_scores, row_indices in zip(hits, scores.tolist(), indices.tolist()):
        assert [h.id for h in row] == [ids[i] for i in row_indices]
        assert [h.score for h in row] == pytest.approx(row_scores, abs=1e-4)
    rows = index.manifest["vector_count"]
    on_disk = sum(f.stat().st_size for f in tmp_path.glob(f"{dtype}/seg-*/*.npy") if f.stem in ("codes", "residuals"))
    assert on_disk <= rows * bytes_per_vector(dtype, 32) + 2 * 128  # two .npy headers
    assert bytes_per_vector("residual2", 64) <= 24


def test_residual_index_updates_keep_their_codec(tmp_path: Path) -> None:
    documents = [clustered_vectors(12, seed=i) for i in range(40)]
    pooled = pool_corpus(documents, "kmeans", 2, show_progress_bar=False)
    settings_ = {**SETTINGS, "pool_factor": 2, "dtype": "residual2"}
    index = Index.from_documents(tmp_path / "idx", [f"d{i}" for i in range(40)], pooled, settings_)
    codec_file = index.manifest["codec"]
    index.add_documents(["n0", "n1"], [clustered_vectors(5, seed=90), clustered_vectors(7, seed=91)])
    index.delete(["d0", "n0"])
    first_segment = index.manifest["segments"][0]
    before = (tmp_path / "idx" / first_segment / "residuals.npy").stat().st_mtime_ns
    assert index.manifest["codec"] == codec_file and len(index.manifest["segments"]) == 2
    assert (tmp_path / "idx" / first_segment / "residuals.npy").stat().st_mtime_ns == before  # untouched by add
    reopened = Index.open(tmp_path / "idx")
    assert sorted(reopened.ids) == sorted([f"d{i}" for i in range(1, 40)] + ["n1"])
    query = clustered_vectors(6, seed=7)
    assert reopened.search_embeddings([query], 5) == index.search_embeddings([query], 5)
    index.compact()
    assert Index.open(tmp_path / "idx").manifest["deleted"] == {}
    assert sorted(Index.open(tmp_path / "idx").ids) == sorted(reopened.ids)


def test_two_level_centroids_cover_the_vectors_about_as_well_as_flat_k_means(monkeypatch) -> None:
    vectors = torch.nn.functional.normalize(clustered_vectors(6000, seed=3), dim=-1)
    flat = codec_module.train_centroids(vectors, 256, points_per_centroid=20)
    monkeypatch.setattr(codec_module, "TWO_LEVEL_ABOVE", 64)
    two_level = codec_module.train_centroids(vectors, 256, points_per_centroid=20)
    assert two_level.shape == (256, 32) and torch.allclose(two_level.norm(dim=1), torch.ones(256))
    assert torch.equal(two_level, codec_module.train_centroids(vectors, 256, points_per_centroid=20))  # seeded

    def coverage(centroids: torch.Tensor) -> float:
        return float((vectors @ centroids.T).max(dim=1).values.mean())

    assert coverage(two_level) > coverage(flat) - 0.02
    assert coverage(two_level) > coverage(flat[:16]) + 0.05  # far better than a coarse level alone
    assert coverage(two_level) > coverage(vectors[:256]) + 0.05  # and than 256 vectors taken as they come


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 50), min_size=1, max_size=12), fraction=st.floats(0.01, 1.0))
def test_centroid_shares_sum_to_the_total_and_never_exceed_a_cell(sizes: list[int], fraction: float) -> None:
    sizes_ = np.array(sizes)
    total = int(fraction * sizes_.sum())
    shares = codec_module._shares(sizes_, total)
    assert shares.sum() == total and (shares <= sizes_).all() and (shares >= 0).all()


def test_default_centroid_count_follows_the_index_size_not_the_training_sample(tmp_path: Path) -> None:
    documents = [clustered_vectors(20, seed=i) for i in range(200)]  # 4,000 vectors: 16 * sqrt(4000) ~ 1012
    settings_ = {**SETTINGS, "pool_factor": 1, "dtype": "residual2"}
    index = Index.from_documents(tmp_path / "idx", [f"d{i}" for i in range(200)], documents, settings_)
    assert len(index.codec.centroids) == codec_module.default_num_centroids(4000) == 1024
    assert codec_module.default_num_centroids(60_000_000) == codec_module.MAX_CENTROIDS
