"""The candidate stage: probe scores, centroid-grouped storage, segment size limit, grouped assignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import latepool.index.index as index_class_module
import latepool.index.search as search_module
import latepool.index.writer as index_module
from latepool.index import Index
from latepool.index.codec import CentroidGroups, Codec, assign, train_centroids
from latepool.index.index import MIN_RESCORE, RESCORE_VECTORS, WHOLE_VECTOR_PROBES, default_search
from latepool.index.kernels import DENSE_BELOW, row_block_cells, row_cells, score_lists
from latepool.index.search import (
    SegmentView,
    _best_candidates,
    _Probe,
    _probe,
    _probe_segment,
    candidate_topk,
    maxsim_rows,
    merge_tokens,
    probe_counts,
)
from latepool.index.storage import Segment, read_segment, write_segment
from latepool.options import RESIDUAL_BITS
from test_codec import SETTINGS, clustered_vectors


def documents_of(vectors: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    """Split vectors into documents of 1-9 rows."""
    generator = torch.Generator().manual_seed(seed)
    lengths, total = [], 0
    while total < len(vectors):
        lengths.append(min(int(torch.randint(1, 10, (1,), generator=generator)), len(vectors) - total))
        total += lengths[-1]
    return list(vectors.split(lengths))


def coded_segment(
    tmp_path: Path, seed: int = 0, bits: int = 2, dim: int = 32, vectors: int = 1500, centroids: int = 32
) -> tuple[Codec, Segment]:
    """A residual-coded segment of clustered vectors (documents of 1-9 rows, split under ``seed``), its codec."""
    return stored_segment(tmp_path, f"residual{bits}", seed, dim, vectors, centroids)


def stored_segment(
    tmp_path: Path, dtype: str, seed: int = 0, dim: int = 32, vectors: int = 1500, centroids: int = 32
) -> tuple[Codec, Segment]:
    """A segment of clustered vectors stored as ``dtype`` (grouped by centroid), and its codec."""
    vectors = clustered_vectors(vectors, dim=dim)
    documents = documents_of(vectors, seed=seed)
    codec = Codec.train(vectors, num_centroids=centroids, bits=RESIDUAL_BITS.get(dtype, 0))
    write_segment(tmp_path / "seg", [str(i) for i in range(len(documents))], documents, dtype, codec)
    return codec, read_segment(tmp_path, "seg", dtype, dim)


@pytest.mark.parametrize(
    "dtype,dim",  # residual bytes per row: 16, 8, 4, and 6 and 3 (not whole groups of four); whole vectors
    [("residual4", 32), ("residual2", 32), ("residual1", 32), ("residual2", 24), ("residual1", 24)]
    + [("float16", 32), ("int8", 32), ("float16", 24)],
)
def test_probing_every_list_scores_every_document_exactly(tmp_path: Path, dtype: str, dim: int) -> None:
    codec, segment = stored_segment(tmp_path, dtype, dim=dim)
    live = np.ones(segment.count, dtype=bool)
    live[[3, 7]] = False
    query = clustered_vectors(6, dim=dim, seed=4)
    probe, base = _probe(codec, query, nprobe=32)
    found, scores = _probe_segment(SegmentView(segment, live, 0), probe, base)
    decoded = segment.documents(codec)
    lengths = torch.tensor([len(d) for d in decoded])
    exact = maxsim_rows(torch.cat(decoded), lengths, query, torch.ones(len(query), 1))[:, 0]
    assert found.tolist() == [d for d in range(segment.count) if live[d]]
    assert scores.numpy() == pytest.approx(exact[found].numpy(), abs=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_whole_vector_rows_are_scored_exactly_where_the_probe_reads_them(tmp_path: Path, dtype: str) -> None:
    """A float16 / int8 row has no residual: the probe scores it from its stored vector, not its centroid."""
    codec, segment = stored_segment(tmp_path, dtype, seed=1)
    query = clustered_vectors(4, seed=5)
    probe, base = _probe(codec, query, nprobe=2)
    found, scores = _probe_segment(SegmentView(segment, np.ones(segment.count, dtype=bool), 0), probe, base)
    assert len(probe.cells) == len(query)  # no tokens merged: each weighs 1
    decoded = segment.documents(codec)
    bounds = segment.offsets
    codes = [segment.read_rows(slice(bounds[d], bounds[d + 1]))["codes"] for d in range(segment.count)]
    expected = np.zeros(segment.count)
    for token in range(len(query)):  # per token, a document's best row in the probed lists, else the floor
        probed = probe.cells[token][probe.cells[token] >= 0]
        for document, rows in enumerate(decoded):
            read = np.isin(codes[document], probed)
            best = float((rows[read] @ query[token]).max()) if read.any() else -np.inf
            expected[document] += max(best, float(probe.floors[token]))
    assert 0 < len(found) < segment.count
    assert scores.numpy() == pytest.approx(expected[found], abs=1e-4)
    assert np.all(expected[np.setdiff1d(np.arange(segment.count), found)] == pytest.approx(base, abs=1e-4))


def test_row_cells_find_each_rows_list_across_empty_and_long_lists() -> None:
    sizes = np.random.default_rng(0).choice([0, 0, 1, 5, 63, 64, 65, 200], size=300)
    ivf_offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = int(ivf_offsets[-1])
    stored = np.random.default_rng(1).permutation(rows)
    cells = row_cells(stored, ivf_offsets, row_block_cells(ivf_offsets, rows))
    assert cells.tolist() == (np.searchsorted(ivf_offsets, stored, side="right") - 1).tolist()
    assert (sizes[cells] > 0).all()


def test_repeated_query_tokens_probe_once_and_count_for_each_repeat(tmp_path: Path) -> None:
    codec, segment = coded_segment(tmp_path, seed=2)
    distinct = clustered_vectors(5, seed=6)
    query = torch.cat([distinct, distinct[[0, 0, 3]]])  # like the mask tokens of query expansion
    representatives, weights = merge_tokens(query)
    assert representatives.tolist() == [0, 1, 2, 3, 4] and weights.tolist() == [3, 1, 1, 2, 1]
    probe, base = _probe(codec, query, nprobe=32)
    assert len(probe.cells) == 5  # each list is read once per distinct token
    found, scores = _probe_segment(SegmentView(segment, np.ones(segment.count, dtype=bool), 0), probe, base)
    decoded = segment.documents(codec)
    lengths = torch.tensor([len(d) for d in decoded])
    exact = maxsim_rows(torch.cat(decoded), lengths, query, torch.ones(len(query), 1))[:, 0]
    assert scores.numpy() == pytest.approx(exact[found].numpy(), abs=1e-4)  # every repeat counted


def test_heavier_tokens_probe_more_lists_and_each_scores_as_if_probed_alone(tmp_path: Path) -> None:
    codec, segment = coded_segment(tmp_path, seed=3)
    view = SegmentView(segment, np.ones(segment.count, dtype=bool), 0)
    distinct = clustered_vectors(4, seed=8)
    query = torch.cat([distinct, distinct[[2] * 6]])  # token 2 stands for 7
    probe, base = _probe(codec, query, nprobe=6)
    counts = (probe.cells >= 0).sum(axis=1)
    assert counts.tolist() == probe_counts(torch.tensor([1.0, 1.0, 7.0, 1.0]), 6, 32).tolist()
    assert counts[2] > counts[0] and abs(int(counts.sum()) - 6 * 4) <= 2  # the same lists read in all
    found, scores = _probe_segment(view, probe, base)
    alone = np.zeros(segment.count, dtype=np.float32)
    for token, count in enumerate(counts.tolist()):  # each token probed on its own, no padding
        own = _Probe(
            probe.cells[token : token + 1, :count],
            probe.cell_scores[token : token + 1, :count],
            probe.floors[token : token + 1],
            probe.tables[token : token + 1],
        )
        documents, own_scores = _probe_segment(view, own, float(own.floors.sum()))
        alone[documents] += own_scores.numpy() - float(own.floors.sum())
    assert found.tolist() == np.flatnonzero(alone > 0).tolist()
    assert scores.numpy() == pytest.approx(alone[found] + base, abs=1e-4)
    assert probe_counts(torch.tensor([1.0, 9.0]), 32, 32).tolist() == [32, 32]  # nprobe >= centroids: every list


def test_near_duplicate_tokens_join_their_closest_representative() -> None:
    generator = torch.Generator().manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(4, 16, generator=generator), dim=1)
    noisy = anchors[torch.tensor([2, 0, 2])] + 0.01 * torch.randn(3, 16, generator=generator)
    query = torch.cat([anchors, noisy])
    representatives, weights = merge_tokens(query)
    assert representatives.tolist() == [0, 1, 2, 3] and weights.tolist() == [2, 1, 3, 1]
    assert merge_tokens(query, similarity=1.01)[0].tolist() == list(range(7))  # nothing merged


def test_a_narrow_probe_never_scores_above_its_imputed_bound(tmp_path: Path) -> None:
    codec, segment = coded_segment(tmp_path, seed=1)
    query = clustered_vectors(6, seed=5)
    probe, base = _probe(codec, query, nprobe=2)
    found, scores = _probe_segment(SegmentView(segment, np.ones(segment.count, dtype=bool), 0), probe, base)
    decoded = segment.documents(codec)
    # a document's probe score takes, per token, its best probed row or else the token's best unprobed
    # centroid score, and never less than that bound
    assert 0 < len(found) < segment.count
    assert (scores >= base - 1e-5).all()
    best_rows = torch.stack([(query @ decoded[d].T).amax(dim=1) for d in found.tolist()])
    assert (scores <= torch.maximum(best_rows, torch.from_numpy(probe.floors)).sum(dim=1) + 1e-4).all()


def test_vectors_are_stored_grouped_by_centroid_and_read_back_in_document_order(tmp_path: Path) -> None:
    vectors = clustered_vectors(800)
    documents = documents_of(vectors, seed=2)
    codec = Codec.train(vectors, num_centroids=16)
    write_segment(tmp_path / "seg", [str(i) for i in range(len(documents))], documents, "float16", codec)
    segment = read_segment(tmp_path, "seg", "float16", 32)
    codes = codec.assign(torch.cat(documents)).astype(np.int64)
    stored_codes = np.searchsorted(segment.ivf_offsets, np.arange(segment.rows), side="right") - 1
    assert np.array_equal(stored_codes[segment.doc_rows], codes)  # each list holds exactly its centroid's rows
    owners = np.repeat(np.arange(len(documents)), np.diff(segment.offsets))
    assert np.array_equal(segment.row_docs[segment.doc_rows], owners)
    for original, decoded in zip(documents, segment.documents(codec)):
        assert torch.allclose(original, decoded, atol=2e-3)  # float16


def test_documents_beyond_the_segment_limit_go_to_more_segments(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(index_module, "MAX_SEGMENT_DOCUMENTS", 7)
    documents = documents_of(clustered_vectors(300), seed=3)
    ids = [f"d{i}" for i in range(len(documents))]
    index = Index.from_documents(tmp_path / "idx", ids[:20], documents[:20], {**SETTINGS, "dtype": "residual2"})
    assert len(index.manifest["segments"]) == 3
    index.add_documents(ids[20:30], documents[20:30])
    assert len(index.manifest["segments"]) == 5
    index.delete(["d0", "d25"])
    queries = clustered_vectors(12, seed=6).split(4)
    before = index.search_embeddings(list(queries), 5, candidates=False)
    index.compact()
    assert all(segment.count <= 7 for segment in index._snapshot.segments)
    assert sorted(index.ids) == sorted(i for i in ids[:30] if i not in {"d0", "d25"})
    assert index.search_embeddings(list(queries), 5, candidates=False) == before
    reopened = Index.open(tmp_path / "idx")
    approximate = reopened.search_embeddings(list(queries), 5, candidates=True, nprobe=10_000, rescore=100)
    assert [[h.id for h in row] for row in approximate] == [[h.id for h in row] for row in before]
    assert [h.score for row in approximate for h in row] == pytest.approx([h.score for row in before for h in row])


def test_grouped_assignment_agrees_with_scoring_every_centroid() -> None:
    vectors = clustered_vectors(20_000, seed=7)
    centroids = train_centroids(vectors, 2048, points_per_centroid=8)
    groups = CentroidGroups.of(centroids)
    assert len(groups.members) == 32 and sum(len(m) for m in groups.members) == 2048
    exact, grouped = assign(vectors, centroids), groups.assign(vectors)
    assert torch.equal(grouped, CentroidGroups.of(centroids).assign(vectors))  # deterministic
    assert (exact == grouped).float().mean() > 0.9
    scores = vectors @ centroids.T
    lost = scores.gather(1, exact[:, None]) - scores.gather(1, grouped[:, None])
    assert (lost >= 0).all() and lost.mean() < 0.01


def test_search_settings_are_checked_and_rescore_covers_k(tmp_path: Path) -> None:
    documents = documents_of(clustered_vectors(400), seed=4)
    ids = [f"d{i}" for i in range(len(documents))]
    index = Index.from_documents(tmp_path / "idx", ids, documents, {**SETTINGS, "dtype": "residual2"})
    query = [clustered_vectors(4, seed=8)]
    for bad in ({"k": 0}, {"nprobe": 0}, {"rescore": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            index.search_embeddings(query, **({"k": 5} | bad))
    assert len(index.search_embeddings(query, 7, candidates=True, rescore=2)[0]) == 7


def test_a_batch_of_queries_gets_what_each_query_gets_alone(tmp_path: Path) -> None:
    documents = documents_of(clustered_vectors(3000), seed=6)
    ids = [f"d{i}" for i in range(len(documents))]
    index = Index.from_documents(tmp_path / "idx", ids, documents, {**SETTINGS, "dtype": "residual2"})
    index.add_documents(["x0", "x1"], [clustered_vectors(4, seed=20), clustered_vectors(3, seed=21)])  # 2 segments
    queries = [clustered_vectors(5, seed=s) for s in range(30, 36)]
    batched = index.search_embeddings(queries, 8, candidates=True, nprobe=4, rescore=20)
    alone = [index.search_embeddings([q], 8, candidates=True, nprobe=4, rescore=20)[0] for q in queries]
    assert [[h.id for h in row] for row in batched] == [[h.id for h in row] for row in alone]
    assert [h.score for row in batched for h in row] == pytest.approx([h.score for row in alone for h in row])


def test_keeping_each_segments_best_keeps_the_best_of_all_segments(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(index_module, "MAX_SEGMENT_DOCUMENTS", 150)
    documents = documents_of(clustered_vectors(3000), seed=7)
    ids = [f"d{i}" for i in range(len(documents))]
    index = Index.from_documents(tmp_path / "idx", ids, documents, {**SETTINGS, "dtype": "residual2"})
    snapshot = index._snapshot
    assert len(snapshot.views) >= 3
    for seed in range(40, 45):
        query = clustered_vectors(5, seed=seed)
        probe, base = _probe(snapshot.codec, query, nprobe=24)
        everything = [(view, *_probe_segment(view, probe, base)) for view in snapshot.views]
        pruned = [(view, *_probe_segment(view, probe, base, keep=12)) for view in snapshot.views]
        assert all(len(documents) <= 12 for _, documents, _ in pruned)
        assert any(len(documents) > 12 for _, documents, _ in everything)  # some segment was pruned
        best_all, best_pruned = _best_candidates(everything, 12)[2], _best_candidates(pruned, 12)[2]
        assert torch.equal(best_all, best_pruned) and torch.equal(best_all, best_all.sort(descending=True).values)


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    query_tokens=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
)
def test_the_two_exact_maxsims_agree(lengths: list[int], query_tokens: list[int], seed: int) -> None:
    """The index's row MaxSim and the sweep's packed one score every document alike (see latepool.scoring)."""
    from latepool.scoring import PackedDocuments, maxsim_topk

    generator = torch.Generator().manual_seed(seed)
    documents = [torch.randn(n, 8, generator=generator) for n in lengths]
    queries = [torch.randn(n, 8, generator=generator) for n in query_tokens]
    tokens = torch.cat(queries)
    owners = torch.zeros(len(tokens), len(queries))
    owner = torch.repeat_interleave(torch.arange(len(queries)), torch.tensor(query_tokens))
    owners[torch.arange(len(tokens)), owner] = 1
    rows = maxsim_rows(torch.cat(documents), torch.tensor(lengths), tokens, owners)
    scores, indices = maxsim_topk(queries, PackedDocuments.pack(documents), len(documents))
    for query in range(len(queries)):
        packed = torch.zeros(len(documents))
        packed[indices[query]] = scores[query]
        assert torch.allclose(rows[:, query], packed, atol=1e-4)


def copies_index(tmp_path: Path, copies: int = 8) -> Index:
    """An index where each of ~120 documents has ``copies`` jittered near-copies (ties near every top k)."""
    generator = torch.Generator().manual_seed(11)
    documents = []
    for document in documents_of(clustered_vectors(600), seed=9):
        noisy = document + 0.02 * torch.randn((copies, *document.shape), generator=generator)
        documents += [document, *torch.nn.functional.normalize(noisy, dim=-1)]
    ids = [f"d{i}" for i in range(len(documents))]
    return Index.from_documents(tmp_path / "idx", ids, documents, {**SETTINGS, "dtype": "residual2"})


def test_the_stopping_rule_never_returns_fewer_than_k(tmp_path: Path) -> None:
    index = copies_index(tmp_path)
    snapshot = index._snapshot
    for seed in range(50, 55):
        query = clustered_vectors(5, seed=seed)
        for rescore in (1, 3, 10):  # a first round below k still ends with k documents
            scores, ordinals = candidate_topk(snapshot.views, snapshot.codec, [query], 10, 8, rescore, 400)[0]
            assert len(ordinals) == 10 and len(set(ordinals.tolist())) == 10
        hits = index.search_embeddings([query], 10, candidates=True, nprobe=8, rescore=1, rescore_limit=50)[0]
        assert len(hits) == 10


def test_with_the_rule_off_the_best_rescore_candidates_by_probe_score_are_scored_exactly(tmp_path: Path) -> None:
    index = copies_index(tmp_path)
    snapshot = index._snapshot
    decoded = [d for view in snapshot.views for d in view.segment.documents(snapshot.codec)]
    for seed in range(60, 64):
        query = clustered_vectors(5, seed=seed)
        probe, base = _probe(snapshot.codec, query, nprobe=8)
        probed = [(view, *_probe_segment(view, probe, base)) for view in snapshot.views]
        ordinals = torch.cat([torch.from_numpy(d + view.base) for view, d, _ in probed])
        best = ordinals[torch.cat([s for _, _, s in probed]).topk(40).indices]
        exact = torch.stack(
            [maxsim_rows(decoded[o], torch.tensor([len(decoded[o])]), query, torch.ones(5, 1))[0, 0] for o in best]
        )
        expected = best[exact.topk(10).indices]
        for limit in (None, 0, 40):
            _, got = candidate_topk(snapshot.views, snapshot.codec, [query], 10, 8, 40, limit)[0]
            assert got.tolist() == expected.tolist()
        hits = index.search_embeddings([query], 10, candidates=True, nprobe=8, rescore=40, rescore_limit=0)[0]
        assert [h.id for h in hits] == [snapshot.id_of(int(o)) for o in expected]


def test_the_stopping_rule_scores_more_only_where_candidates_could_still_enter(tmp_path: Path) -> None:
    index = copies_index(tmp_path)
    queries = [clustered_vectors(5, seed=seed) for seed in range(70, 90)]
    exact = index.search_embeddings(queries, 10, candidates=False)

    def recall(hits):
        return sum(len({h.id for h in a} & {h.id for h in b}) for a, b in zip(hits, exact)) / (10 * len(exact))

    fixed = index.search_embeddings(queries, 10, candidates=True, nprobe=8, rescore=10, rescore_limit=0)
    ruled = index.search_embeddings(queries, 10, candidates=True, nprobe=8, rescore=10, rescore_limit=1000)
    assert recall(fixed) < 0.9 and recall(ruled) > recall(fixed) + 0.05
    # without near-copies, the rounds stop long before the limit
    spread = copies_index(tmp_path / "spread", copies=0)
    rescored = []

    def counted(found, *args, **kwargs):
        rescored.append(sum(len(documents) for _, documents in found))
        return exact_scores(found, *args, **kwargs)

    exact_scores = search_module._exact_scores
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_module, "_exact_scores", counted)
        spread.search_embeddings(queries, 10, candidates=True, nprobe=8, rescore=10, rescore_limit=1000)
    assert sum(rescored) < len(queries) * 40


# ~2,400 documents in 1,024 lists: a token reading one list touches under 1/64 of the documents (the kernel's
# sparse pass, kernels.DENSE_BELOW), one reading all 1,024 touches every one (the dense pass)
@pytest.mark.parametrize("nprobe", [1, 1024])
def test_probe_scores_follow_their_definition_whether_a_token_touches_few_documents_or_many(
    tmp_path: Path, nprobe: int
) -> None:
    codec, segment = coded_segment(tmp_path, seed=5, vectors=12000, centroids=1024)
    live = np.ones(segment.count, dtype=bool)
    live[::7] = False
    query = clustered_vectors(6, seed=9)
    probe, base = _probe(codec, query, nprobe=nprobe)
    rows_per_token = np.where(probe.cells >= 0, np.diff(segment.ivf_offsets)[probe.cells], 0).sum(axis=1)
    assert (
        (rows_per_token * DENSE_BELOW < segment.count).all() if nprobe == 1 else (rows_per_token == segment.rows).all()
    )
    found, scores = _probe_segment(SegmentView(segment, live, 0), probe, base)
    # the definition, in NumPy: per token, each document's best row over the probed lists, less the floor
    residuals, row_docs = np.asarray(segment.values), np.asarray(segment.row_docs)
    positions = np.arange(residuals.shape[1])
    gains = np.zeros(segment.count)
    for token in range(len(probe.cells)):
        best = np.full(segment.count, -np.inf)
        for cell, cell_score in zip(probe.cells[token], probe.cell_scores[token]):
            if cell < 0:
                break
            for row in range(segment.ivf_offsets[cell], segment.ivf_offsets[cell + 1]):
                score = cell_score + probe.tables[token, positions, residuals[row]].sum()
                best[row_docs[row]] = max(best[row_docs[row]], score)
        gains += np.maximum(best - probe.floors[token], 0)
    expected = np.flatnonzero((gains > 0) & live)
    assert found.tolist() == expected.tolist()
    assert scores.numpy() == pytest.approx(gains[expected] + base, abs=1e-4)
    assert (0 < len(found) < live.sum()) if nprobe == 1 else len(found) == live.sum()


@pytest.mark.parametrize(
    "dtype,probes", [("residual2", 1), ("float16", WHOLE_VECTOR_PROBES), ("int8", WHOLE_VECTOR_PROBES)]
)
def test_default_probes_follow_the_dtype_and_the_first_rescoring_the_vectors(
    tmp_path: Path, dtype: str, probes: int
) -> None:
    vectors = clustered_vectors(400)
    documents = documents_of(vectors, seed=4)  # 1-9 vectors each: short documents
    ids = [f"d{i}" for i in range(len(documents))]
    index = Index.from_documents(tmp_path / "idx", ids, documents, {**SETTINGS, "dtype": dtype})
    asked = []

    def recorded(views, codec, queries, k, nprobe, rescore, *args):
        asked.append((nprobe, rescore))
        return candidate_topk(views, codec, queries, k, nprobe, rescore, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index_class_module, "candidate_topk", recorded)
        index.search_embeddings([clustered_vectors(4, seed=8)], 5, candidates=True)
    plain = default_search(len(index._snapshot.codec.centroids), len(ids))
    nprobe, rescore = asked[0]
    assert nprobe == plain.nprobe * probes
    # as many documents as hold RESCORE_VECTORS of the index's vectors, more than the 256 of long documents
    assert rescore == RESCORE_VECTORS * len(ids) // len(vectors) > plain.rescore == MIN_RESCORE


def test_float16_rows_score_as_their_exact_float32_values_subnormals_and_signs_included() -> None:
    values = np.array([6e-8, -6e-8, 1e-5, -0.0, 0.5, -2.0, 65504.0, 3.0e-5], np.float16)  # 6e-8 is subnormal
    rows = np.diag(values)  # row i: values[i] at position i, one document per row
    token = np.array([[2.0**24, 2.0**24, 2.0**14, 1, 1, 1, 2.0**-10, 2.0**12]], np.float32)  # exact scalings
    found, gains = score_lists(
        np.array([[0]]),
        np.zeros((1, 1), np.float32),
        np.array([-100.0], np.float32),  # every document gains its score above the floor
        np.array([0, len(rows)]),
        np.arange(len(rows), dtype=np.uint16),
        rows,
        token,
        np.ones(len(rows), dtype=bool),
    )
    expected = values.astype(np.float64) * token[0] + 100.0
    assert found.tolist() == list(range(len(rows)))
    assert gains.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert expected[0] - 100.0 > 0.9  # the subnormal counts (flushed to zero, the test would fail)
