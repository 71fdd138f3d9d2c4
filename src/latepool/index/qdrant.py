"""Scale-out on Qdrant: export an index's pooled multi-vectors to a collection and search it there.

The collection stores one point per document: its pooled vectors as a multivector compared with
``MAX_SIM`` on dot products (latepool's MaxSim), and the document id in the payload. The same code
talks to an embedded local store (``path=``), a Qdrant server, or a cluster (``url=``).
"""

from __future__ import annotations

import uuid

from torch import Tensor

from latepool.extras import require
from latepool.index.index import Hit, Index

_NAMESPACE = uuid.UUID("6f1c3a52-8d1e-4d0b-9a53-6c9a3b7a1f20")


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


def export_index(index: Index, client, collection: str, batch_size: int = 64, overwrite: bool = False) -> int:
    """Write every live document of ``index`` into ``collection``; returns the number of points.

    Args:
        index: The latepool index.
        client: A ``QdrantClient`` (see :func:`connect`).
        collection: Collection name; created with a multivector MAX_SIM configuration.
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
        vectors_config=models.VectorParams(
            size=index.manifest["dim"],
            distance=models.Distance.DOT,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        ),
    )
    count = 0
    for ids, documents in index.documents(batch_size=batch_size):
        points = [
            models.PointStruct(id=point_id(doc_id), vector=vectors.tolist(), payload={"doc_id": doc_id})
            for doc_id, vectors in zip(ids, documents)
        ]
        client.upsert(collection, points=points, wait=True)
        count += len(points)
    return count


def search_qdrant(client, collection: str, queries: list[Tensor], k: int = 10, exact: bool = True) -> list[list[Hit]]:
    """Top-k ``(doc_id, score)`` of each ``(len, dim)`` query embedding from a Qdrant collection."""
    from qdrant_client import models

    results: list[list[Hit]] = []
    for query in queries:
        response = client.query_points(
            collection,
            query=query.float().tolist(),
            limit=k,
            with_payload=True,
            search_params=models.SearchParams(exact=exact),
        )
        results.append([Hit(point.payload["doc_id"], float(point.score)) for point in response.points])
    return results
