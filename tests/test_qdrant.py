"""Qdrant export and search (qdrant-client local mode and Qdrant Edge), and the MUVERA encodings (fde)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from latepool.index import Index
from latepool.index.fde import FDEConfig, encode_documents, encode_queries

SETTINGS = {
    "model": "",
    "model_hash": "",
    "query_length": 8,
    "document_length": 32,
    "pool_method": "kmeans",
    "pool_factor": 2,
    "dtype": "float16",
}


def topical(count: int, length: int, seed: int, dim: int = 16) -> list[torch.Tensor]:
    """Token sets around three of 20 topics each, unit norm, like a small corpus."""
    generator = torch.Generator().manual_seed(seed)
    topics = torch.nn.functional.normalize(torch.randn(20, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    sets = []
    for _ in range(count):
        chosen = topics[torch.randint(0, 20, (3,), generator=generator)]
        picks = chosen[torch.randint(0, 3, (length,), generator=generator)]
        sets.append(torch.nn.functional.normalize(picks + 0.3 * torch.randn(length, dim, generator=generator), dim=-1))
    return sets


@pytest.fixture
def index(tmp_path: Path) -> Index:
    documents = topical(300, 6, seed=1)
    return Index.from_documents(tmp_path / "idx", [f"doc-{i}" for i in range(300)], documents, SETTINGS)


def ids(rows) -> list[list[str]]:
    return [[h.id for h in row] for row in rows]


def test_encodings_approximate_maxsim_well_enough_to_prefetch() -> None:
    documents, queries = topical(400, 8, seed=2), topical(30, 6, seed=3)
    config = FDEConfig(dim=16)
    approximate = encode_queries(queries, config) @ encode_documents(documents, config).T
    exact = torch.stack([torch.stack([(q @ d.T).amax(dim=1).sum() for d in documents]) for q in queries])
    truth = exact.topk(10, dim=1).indices
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(approximate.topk(80, dim=1).indices, truth)) / (
        10 * len(queries)
    )
    assert recall >= 0.8  # 80 of 400 prefetched hold most of the exact top 10 (at random: 0.2)
    assert torch.equal(encode_documents(documents[:3], config), encode_documents(documents[:3], FDEConfig(dim=16)))
    with pytest.raises(ValueError, match="non-empty"):
        encode_documents([torch.zeros(0, 16)], config)


def test_candidates_rank_documents_by_each_tokens_best_vector() -> None:
    from latepool.index.qdrant import point_id, rank_documents, vector_point_ids

    a, b = point_id("a"), point_id("b")
    assert a.endswith("0000") and vector_point_ids(a, 3, start=1) == vector_point_ids(a, 3)[1:]
    assert [v[:-4] for v in vector_point_ids(a, 3)] == [a[:-4]] * 3  # a vector point names its document
    assert len({a, b, *vector_point_ids(a, 3), *vector_point_ids(b, 3)}) == 8
    token_hits = [
        [("a", 0.9), ("b", 0.8), ("a", 0.7), ("c", 0.5)],  # floor 0.5: a gains 0.4 (its best), b 0.3, c 0
        [("b", 0.6), ("c", 0.45), ("a", 0.2)],  # weight 2, floor 0.2: b 0.8, c 0.5, a 0
    ]
    assert rank_documents(token_hits, [1.0, 2.0], 3) == ["b", "c", "a"]
    assert rank_documents(token_hits, [1.0, 2.0], 2) == ["b", "c"]
    assert rank_documents([[], token_hits[1]], [1.0, 1.0], 3) == ["b", "c", "a"]


def test_qdrant_local_mode_matches_exact_search(index: Index, tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    from latepool.index.qdrant import connect, export_index, search_qdrant

    queries = topical(5, 4, seed=4)
    ours = index.search_embeddings(queries, 10, candidates=False)
    client = connect(path=str(tmp_path / "qdrant"))
    try:
        assert export_index(index, client, "latepool", shard_number=2).written == 300
        exact = search_qdrant(client, "latepool", queries, 10, prefetch=None)
        prefetched = search_qdrant(client, "latepool", queries, 10, prefetch=300)
        token = client.get_collection("latepool").config.params.vectors["token"]
    finally:
        client.close()
    assert token.quantization_config.scalar.type == "int8"  # the graph walks int8 copies (a server's setting)
    for theirs in (exact, prefetched):
        assert ids(theirs) == ids(ours)
        assert [h.score for r in theirs for h in r] == pytest.approx([h.score for r in ours for h in r], abs=1e-4)


def test_qdrant_edge_matches_exact_search_and_prefetches(index: Index, tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge")
    from latepool.index.qdrant import EdgeCollection, export_edge, point_id, search_edge

    queries = topical(8, 4, seed=5)
    ours = index.search_embeddings(queries, 10, candidates=False)
    shard = export_edge(index, tmp_path / "edge")
    try:
        exact = search_edge(shard, queries, 10, prefetch=None)
        everything = search_edge(shard, queries, 10, prefetch=300)
        narrow = search_edge(shard, queries, 10, prefetch=60)
        best, more = (EdgeCollection(shard).candidates(queries[0], limit) for limit in (5, 60))
    finally:
        shard.close()
    assert len(more) == len(set(more)) == 60 and more[:5] == best  # best first: a longer list extends a shorter
    config = json.loads((tmp_path / "edge" / "edge_config.json").read_text())
    assert config["vectors"]["token"]["quantization_config"]["scalar"]["type"] == "int8"
    assert set(more) <= {point_id(f"doc-{i}") for i in range(300)}
    for theirs in (exact, everything):
        assert ids(theirs) == ids(ours)
        assert [h.score for r in theirs for h in r] == pytest.approx([h.score for r in ours for h in r], abs=1e-4)
    recall = sum(len(set(a) & set(b)) for a, b in zip(ids(narrow), ids(ours))) / (10 * len(queries))
    assert recall >= 0.8  # 60 of 300 prefetched from the query tokens' nearest vectors in the graph


def test_exporting_again_writes_only_what_changed(index: Index, tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    from latepool.index.qdrant import QdrantCollection, connect, export_index, search_qdrant

    client = connect(path=str(tmp_path / "qdrant"))
    try:
        first = export_index(index, client, "latepool")
        again = export_index(index, client, "latepool")
        index.delete([f"doc-{i}" for i in range(20)])
        index.add_documents([f"new-{i}" for i in range(7)], topical(7, 6, seed=9))
        index.add_documents(["doc-30"], topical(1, 5, seed=10), replace=True)  # changed vectors, same id
        update = export_index(index, client, "latepool")
        assert QdrantCollection.open(client, "latepool", dim=16).count() == len(index) == 287
        # the replaced doc-30 has five vectors now: its sixth vector point went with the old version
        assert client.count("latepool", exact=True).count == 287 + 286 * 6 + 5
        queries = topical(5, 4, seed=4)
        exact = search_qdrant(client, "latepool", queries, 10, prefetch=None)
        redone = export_index(index, client, "latepool", overwrite=True)
        with pytest.raises(ValueError, match="dimension"):
            export_index(
                Index.from_documents(tmp_path / "other", ["a"], [torch.ones(2, 8)], SETTINGS), client, "latepool"
            )
    finally:
        client.close()
    assert (first.written, first.deleted) == (300, 0)
    assert (again.documents, again.written, again.deleted) == (300, 0, 0)
    assert (update.documents, update.written, update.deleted) == (287, 8, 20)
    assert redone.written == 287
    assert ids(exact) == ids(index.search_embeddings(queries, 10, candidates=False))


def test_an_interrupted_edge_export_resumes_and_follows_deletes(index: Index, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("qdrant_edge")
    from qdrant_edge import CountRequest, Filter, HasVectorCondition

    from latepool.index import qdrant
    from latepool.index.qdrant import export_edge, search_edge

    batches = list(index.documents(batch_size=50))

    def interrupted():
        yield from batches[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_edge(interrupted(), tmp_path / "edge", dim=16)
    written = []
    point_values = qdrant._point_values
    monkeypatch.setattr(qdrant, "_point_values", lambda ids, *rest: written.extend(ids) or point_values(ids, *rest))
    export_edge(index, tmp_path / "edge").close()
    assert sorted(written) == sorted(i for ids, _ in batches[3:] for i in ids)  # the first 150 were there
    index.delete([f"doc-{i}" for i in range(0, 300, 3)])
    written.clear()
    shard = export_edge(index, tmp_path / "edge")
    try:
        queries = topical(4, 4, seed=6)
        found = search_edge(shard, queries, 10, prefetch=None)
        documents = shard.count(CountRequest(exact=True, filter=Filter(must=[HasVectorCondition("colbert")])))
        points = shard.count(CountRequest(exact=True))
    finally:
        shard.close()
    assert written == [] and documents == len(index) == 200
    assert points == 200 * (1 + 6)  # each document point and its six vector points, no orphans
    assert ids(found) == ids(index.search_embeddings(queries, 10, candidates=False))
