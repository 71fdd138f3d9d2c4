"""Scale-out on Qdrant: export an index's pooled multi-vectors and search them there.

One point per document, with two named vectors and the document id in the payload:

- ``colbert``: the pooled vectors as a multivector compared with ``MAX_SIM`` on dot products
  (latepool's MaxSim). Its HNSW graph is off (``m=0``): it is only used to rescore.
- ``fde``: the document's MUVERA fixed dimensional encoding (:mod:`latepool.index.fde`), a dense
  vector under Qdrant's HNSW with its int8 scalar quantization.

A search sends the query's encoding as a ``prefetch`` on ``fde`` (``prefetch`` candidates from the
HNSW graph), then Qdrant rescores those candidates by exact MaxSim on ``colbert``. Without
``prefetch`` the search is an exact MaxSim scan of the collection. The same code talks to an
embedded local store (``path=``), a Qdrant server or a cluster (``url=``); :func:`export_edge` and
:func:`search_edge` do the same for a Qdrant Edge shard (``qdrant-edge-py``, Qdrant's embedded engine).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import Tensor

from latepool.extras import require
from latepool.index.fde import FDEConfig, encode_documents, encode_queries
from latepool.index.index import Hit, Index

_NAMESPACE = uuid.UUID("6f1c3a52-8d1e-4d0b-9a53-6c9a3b7a1f20")
MULTIVECTOR, SINGLE = "colbert", "fde"


def connect(url: str | None = None, path: str | None = None, api_key: str | None = None):
    """A ``QdrantClient`` for a server or cluster (``url``) or an embedded local store (``path``)."""
    require("qdrant", "Qdrant export and search")
    from qdrant_client import QdrantClient

    if (url is None) == (path is None):
        raise ValueError("give exactly one of url (a Qdrant server or cluster) and path (local mode)")
    return QdrantClient(url=url, api_key=api_key) if url else QdrantClient(path=path)


def point_id(doc_id: str) -> str:
    """The Qdrant point id (a UUID) of a document id."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


def fde_config(index: Index) -> FDEConfig:
    """The encoding both export and search use for ``index`` (its dimension, the default shape and seed)."""
    return FDEConfig(dim=int(index.manifest["dim"]))


def _points(source: Index | Iterable[tuple[list[str], list[Tensor]]], batch_size: int):
    """Batches of ``(point ids, doc ids, multivectors, encodings)`` over an index's live documents
    (or over ``(ids, documents)`` batches)."""
    batches = source.documents(batch_size=batch_size) if isinstance(source, Index) else source
    config = None
    for ids, documents in batches:
        config = config or FDEConfig(dim=int(documents[0].shape[1]))
        encodings = encode_documents(documents, config)
        yield [point_id(i) for i in ids], ids, [d.tolist() for d in documents], encodings.tolist()


def export_index(index: Index, client, collection: str, batch_size: int = 64, overwrite: bool = False) -> int:
    """Write every live document of ``index`` into a Qdrant collection; returns the number of points.

    Args:
        index: The latepool index.
        client: A ``QdrantClient`` (see :func:`connect`).
        collection: Collection name; created with the ``colbert`` and ``fde`` vectors (module docstring).
        batch_size: Points per upsert.
        overwrite: Drop an existing collection of that name first (otherwise it is an error).
    """
    from qdrant_client import models

    if client.collection_exists(collection):
        if not overwrite:
            raise ValueError(f"Qdrant collection {collection!r} exists; pass overwrite to replace it")
        client.delete_collection(collection)
    client.create_collection(
        collection,
        vectors_config={
            MULTIVECTOR: models.VectorParams(
                size=index.manifest["dim"],
                distance=models.Distance.DOT,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                hnsw_config=models.HnswConfigDiff(m=0),
            ),
            SINGLE: models.VectorParams(
                size=fde_config(index).size,
                distance=models.Distance.DOT,
                quantization_config=models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
                ),
            ),
        },
    )
    count = 0
    for point_ids, ids, multivectors, encodings in _points(index, batch_size):
        points = [
            models.PointStruct(id=p, vector={MULTIVECTOR: m, SINGLE: e}, payload={"doc_id": d})
            for p, d, m, e in zip(point_ids, ids, multivectors, encodings)
        ]
        client.upsert(collection, points=points, wait=True)
        count += len(points)
    return count


def search_qdrant(
    client, collection: str, queries: list[Tensor], k: int = 10, prefetch: int | None = 100, dim: int | None = None
) -> list[list[Hit]]:
    """Top-k of each ``(len, dim)`` query from a collection :func:`export_index` wrote.

    Args:
        client: A ``QdrantClient``.
        collection: The collection.
        queries: Query token embeddings.
        k: Hits per query.
        prefetch: Candidates taken from the ``fde`` HNSW graph and rescored by MaxSim (None: exact
            MaxSim over the whole collection).
        dim: The vectors' dimension (default: the queries').
    """
    from qdrant_client import models

    config = FDEConfig(dim=dim or int(queries[0].shape[1])) if queries else None
    results: list[list[Hit]] = []
    for query in queries:
        prefetches = None
        if prefetch:
            encoding = encode_queries([query], config)[0].tolist()
            prefetches = models.Prefetch(query=encoding, using=SINGLE, limit=max(prefetch, k))
        response = client.query_points(
            collection,
            query=query.float().tolist(),
            using=MULTIVECTOR,
            prefetch=prefetches,
            limit=k,
            with_payload=True,
            search_params=None if prefetch else models.SearchParams(exact=True),
        )
        results.append([Hit(point.payload["doc_id"], float(point.score)) for point in response.points])
    return results


def export_edge(
    source: Index | Iterable[tuple[list[str], list[Tensor]]],
    path: str | Path,
    dim: int | None = None,
    batch_size: int = 256,
) -> Any:
    """Write every live document of an index (or ``(ids, documents)`` batches of ``dim``-dimensional
    documents) into a new Qdrant Edge shard at ``path``; returns the open shard.

    The shard has the same two vectors as :func:`export_index` (the ``fde`` one under HNSW); it is
    optimized (indexed) before it is returned.
    """
    dim = int(source.manifest["dim"]) if isinstance(source, Index) else dim
    if not dim:
        raise ValueError("give the documents' dim when exporting batches")
    require("qdrant-edge", "Qdrant Edge export")
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeShard,
        EdgeVectorParams,
        HnswIndexConfig,
        MultiVectorComparator,
        MultiVectorConfig,
        Point,
        UpdateOperation,
    )

    config = EdgeConfig(
        vectors={
            MULTIVECTOR: EdgeVectorParams(
                size=dim,
                distance=Distance.Dot,
                multivector_config=MultiVectorConfig(MultiVectorComparator.MaxSim),
                hnsw_config=HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
            ),
            SINGLE: EdgeVectorParams(size=FDEConfig(dim=dim).size, distance=Distance.Dot),
        }
    )
    shard = EdgeShard.create(str(path), config)
    for point_ids, ids, multivectors, encodings in _points(source, batch_size):
        points = [
            Point(p, {MULTIVECTOR: m, SINGLE: e}, {"doc_id": d})
            for p, d, m, e in zip(point_ids, ids, multivectors, encodings)
        ]
        shard.update(UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()
    return shard


def search_edge(shard: Any, queries: list[Tensor], k: int = 10, prefetch: int | None = 100) -> list[list[Hit]]:
    """:func:`search_qdrant` on a Qdrant Edge shard written by :func:`export_edge`."""
    from qdrant_edge import Prefetch, Query, QueryRequest, SearchParams

    config = FDEConfig(dim=int(queries[0].shape[1])) if queries else None
    results: list[list[Hit]] = []
    for query in queries:
        prefetches = None
        if prefetch:
            encoding = encode_queries([query], config)[0].tolist()
            prefetches = [Prefetch(limit=max(prefetch, k), query=Query.Nearest(encoding, using=SINGLE))]
        request = QueryRequest(
            limit=k,
            query=Query.Nearest(query.float().tolist(), using=MULTIVECTOR),
            prefetches=prefetches,
            with_payload=True,
            params=None if prefetch else SearchParams(exact=True),
        )
        results.append([Hit(point.payload["doc_id"], float(point.score)) for point in shard.query(request)])
    return results
