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

Exports are idempotent: each point carries a fingerprint of its document's vectors, and exporting
into an existing collection (or shard) writes only the documents that are new or changed and
removes those the index no longer holds. A rerun after an interruption, or after ``index add`` /
``delete``, brings the collection up to date. :class:`QdrantCollection` is what the server searches
through (and keeps in step with the index's writes).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from latepool.extras import require
from latepool.index.fde import FDEConfig, encode_documents, encode_queries
from latepool.index.index import Hit, Index

_NAMESPACE = uuid.UUID("6f1c3a52-8d1e-4d0b-9a53-6c9a3b7a1f20")
MULTIVECTOR, SINGLE = "colbert", "fde"
FINGERPRINT = "fingerprint"  # payload field: what the point's vectors were written from


class QdrantUnavailableError(ValueError):
    """Qdrant could not be reached, or the collection is missing or was not written by latepool."""


@dataclass(frozen=True)
class ExportReport:
    """What an export did.

    Attributes:
        documents: Documents the collection holds for the index afterwards.
        written: Points written (documents new to the collection, or changed).
        deleted: Points removed (documents the index no longer holds).
    """

    documents: int
    written: int
    deleted: int


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


def fingerprint(vectors: Tensor) -> str:
    """A short hash of a document's float32 vectors: equal vectors, equal fingerprint."""
    return hashlib.blake2b(vectors.detach().float().cpu().numpy().tobytes(), digest_size=8).hexdigest()


def fde_config(index: Index) -> FDEConfig:
    """The encoding both export and search use for ``index`` (its dimension, the default shape and seed)."""
    return FDEConfig(dim=int(index.manifest["dim"]))


def _batches(source: Index | Iterable[tuple[list[str], list[Tensor]]], batch_size: int):
    return source.documents(batch_size=batch_size) if isinstance(source, Index) else source


def _sync(
    source: Index | Iterable[tuple[list[str], list[Tensor]]],
    existing: dict[str, str | None],
    write: Callable[[list[str], list[Tensor], list[str]], None],
    remove: Callable[[list[str]], None],
    batch_size: int,
) -> ExportReport:
    """Write the documents of ``source`` whose point is missing from ``existing`` (point id ->
    fingerprint) or holds other vectors, then remove the points no document of ``source`` has."""
    documents = written = 0
    for ids, vectors in _batches(source, batch_size):
        prints = [fingerprint(v) for v in vectors]
        stale = [n for n, (i, f) in enumerate(zip(ids, prints)) if existing.pop(point_id(i), None) != f]
        if stale:
            write([ids[n] for n in stale], [vectors[n] for n in stale], [prints[n] for n in stale])
        documents, written = documents + len(ids), written + len(stale)
    leftover = list(existing)
    for start in range(0, len(leftover), 1024):
        remove(leftover[start : start + 1024])
    return ExportReport(documents, written, len(leftover))


def _point_values(ids: list[str], documents: list[Tensor], prints: list[str]):
    """``(point id, multivector, encoding, payload)`` of each document."""
    encodings = encode_documents(documents, FDEConfig(dim=int(documents[0].shape[1]))).tolist()
    for doc_id, document, encoding, print_ in zip(ids, documents, encodings, prints):
        yield point_id(doc_id), document.float().tolist(), encoding, {"doc_id": doc_id, FINGERPRINT: print_}


def export_index(
    index: Index,
    client,
    collection: str,
    batch_size: int = 64,
    overwrite: bool = False,
    shard_number: int | None = None,
    replication_factor: int | None = None,
) -> ExportReport:
    """Bring a Qdrant collection up to date with the live documents of ``index``.

    A missing collection is created; an existing one gets only the documents that are new or
    changed, and loses those the index no longer holds (see the module docstring).

    Args:
        index: The latepool index.
        client: A ``QdrantClient`` (see :func:`connect`).
        collection: Collection name; created with the ``colbert`` and ``fde`` vectors (module docstring).
        batch_size: Points per upsert.
        overwrite: Drop an existing collection of that name first and write every document.
        shard_number: Shards of a new collection (a cluster spreads them over its nodes).
        replication_factor: Copies of each shard in a cluster.

    Returns:
        An :class:`ExportReport`.

    Example::

        >>> client = connect(path="qdrant-store")  # doctest: +SKIP
        >>> export_index(Index.open("sample.idx"), client, "scifact").written  # doctest: +SKIP
        5183
    """
    from qdrant_client import models

    with _reaching():  # an unreachable server is a clear error, not a traceback
        dim = int(index.manifest["dim"])
        if overwrite and client.collection_exists(collection):
            client.delete_collection(collection)
        if client.collection_exists(collection):
            _check_collection(client, collection, dim)
        else:
            client.create_collection(
                collection,
                vectors_config={
                    MULTIVECTOR: models.VectorParams(
                        size=dim,
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
                shard_number=shard_number,
                replication_factor=replication_factor,
            )
        points = QdrantCollection(client, collection)
        return _sync(index, points.fingerprints(), points.write, points.remove, batch_size)


def _check_collection(client, collection: str, dim: int) -> None:
    """An existing collection must have the vectors an export writes, of ``dim`` values."""
    vectors = client.get_collection(collection).config.params.vectors
    have = vectors.get(MULTIVECTOR) if isinstance(vectors, dict) else None
    if have is None or have.size != dim or SINGLE not in vectors:
        raise ValueError(
            f"Qdrant collection {collection!r} was not written from an index of this dimension ({dim}); "
            "pass overwrite to replace it"
        )


def _fingerprints(page: Callable[[Any], tuple[list[Any], Any]]) -> dict[str, str | None]:
    """Point id -> fingerprint of every point, read page by page (``page(offset)`` returns a page of
    records and the next offset, None after the last)."""
    found: dict[str, str | None] = {}
    offset = None
    while True:
        records, offset = page(offset)
        found.update({str(r.id): (r.payload or {}).get(FINGERPRINT) for r in records})
        if offset is None:
            return found


class QdrantCollection:
    """A collection :func:`export_index` wrote, as a service uses it: search it, write and remove documents.

    Example::

        >>> collection = QdrantCollection.open(connect(url="http://localhost:6333"), "scifact")  # doctest: +SKIP
        >>> collection.search(index.encode_queries(["what is pooling?"]), k=10)  # doctest: +SKIP
    """

    def __init__(self, client, collection: str, prefetch: int | None = 100) -> None:
        self.client, self.collection, self.prefetch = client, collection, prefetch

    @classmethod
    def open(cls, client, collection: str, dim: int | None = None, prefetch: int | None = 100) -> QdrantCollection:
        """Check that Qdrant answers and holds ``collection`` (of ``dim``-dimensional vectors, when given).

        Raises:
            QdrantUnavailableError: Qdrant is unreachable, or the collection is missing or of another shape.
        """
        with _reaching():
            if not client.collection_exists(collection):
                raise QdrantUnavailableError(
                    f"Qdrant collection {collection!r} does not exist; write it with latepool index export-qdrant"
                )
            if dim is not None:
                try:
                    _check_collection(client, collection, dim)
                except ValueError as error:
                    raise QdrantUnavailableError(str(error)) from error
        return cls(client, collection, prefetch)

    def search(self, queries: list[Tensor], k: int = 10) -> list[list[Hit]]:
        """:func:`search_qdrant` with this collection's prefetch."""
        with _reaching():
            return search_qdrant(self.client, self.collection, queries, k, prefetch=self.prefetch)

    def fingerprints(self) -> dict[str, str | None]:
        """Point id -> fingerprint of every point of the collection."""
        with _reaching():
            return _fingerprints(
                lambda offset: self.client.scroll(
                    self.collection, limit=1024, offset=offset, with_payload=[FINGERPRINT]
                )
            )

    def count(self) -> int:
        """Points in the collection."""
        with _reaching():
            return int(self.client.count(self.collection, exact=True).count)

    def write(self, ids: list[str], documents: list[Tensor], prints: list[str] | None = None) -> None:
        """Upsert documents (their points are replaced)."""
        from qdrant_client import models

        prints = prints or [fingerprint(d) for d in documents]
        points = [
            models.PointStruct(id=p, vector={MULTIVECTOR: m, SINGLE: e}, payload=payload)
            for p, m, e, payload in _point_values(ids, documents, prints)
        ]
        with _reaching():
            self.client.upsert(self.collection, points=points, wait=True)

    def remove(self, point_ids: list[str]) -> None:
        """Delete points by point id (see :func:`point_id`)."""
        from qdrant_client import models

        with _reaching():
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=point_ids), wait=True)

    def delete(self, ids: list[str]) -> None:
        """Delete documents by document id."""
        self.remove([point_id(i) for i in ids])


@contextlib.contextmanager
def _reaching() -> Iterator[None]:
    """Turns a failure to reach Qdrant (connection refused, timeout, an error status) into
    :class:`QdrantUnavailableError`; other errors pass through."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except (ResponseHandlingException, UnexpectedResponse, ConnectionError, TimeoutError) as error:
        raise QdrantUnavailableError(f"Qdrant did not answer: {error}") from error


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
    """Bring a Qdrant Edge shard at ``path`` up to date with the live documents of an index (or with
    ``(ids, documents)`` batches of ``dim``-dimensional documents); returns the open shard.

    A missing shard is created with the same two vectors as :func:`export_index` (the ``fde`` one
    under HNSW); an existing one gets only what changed (module docstring). The shard is optimized
    (indexed) before it is returned.

    Example::

        >>> shard = export_edge(Index.open("sample.idx"), "sample.edge")  # doctest: +SKIP
        >>> search_edge(shard, index.encode_queries(["what is pooling?"]), k=10)  # doctest: +SKIP
    """
    dim = int(source.manifest["dim"]) if isinstance(source, Index) else dim
    if not dim:
        raise ValueError("give the documents' dim when exporting batches")
    require("qdrant-edge", "Qdrant Edge export")
    from qdrant_edge import Point, UpdateOperation

    shard = _open_or_create_shard(Path(path), dim)

    def write(ids: list[str], documents: list[Tensor], prints: list[str]) -> None:
        points = [
            Point(p, {MULTIVECTOR: m, SINGLE: e}, payload) for p, m, e, payload in _point_values(ids, documents, prints)
        ]
        shard.update(UpdateOperation.upsert_points(points))

    def remove(point_ids: list[str]) -> None:
        shard.update(UpdateOperation.delete_points(point_ids))

    _sync(source, _shard_points(shard), write, remove, batch_size)
    shard.flush()
    shard.optimize()
    return shard


def _open_or_create_shard(path: Path, dim: int) -> Any:
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeShard,
        EdgeVectorParams,
        HnswIndexConfig,
        MultiVectorComparator,
        MultiVectorConfig,
    )

    if path.is_dir() and any(path.iterdir()):
        try:
            return EdgeShard.load(str(path))
        except Exception as error:  # qdrant-edge raises its own errors; say which directory
            raise ValueError(f"{path}: not a Qdrant Edge shard ({error})") from error
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
    return EdgeShard.create(str(path), config)


def _shard_points(shard: Any) -> dict[str, str | None]:
    """Point id -> fingerprint of every point of an Edge shard."""
    from qdrant_edge import ScrollRequest

    return _fingerprints(
        lambda offset: shard.scroll(ScrollRequest(offset=offset, limit=1024, with_payload=True, with_vector=False))
    )


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
