"""Scale-out on Qdrant: export an index's pooled multi-vectors and search them there.

Each document is one document point and one vector point per pooled vector:

- the document point holds ``colbert``, its vectors as a multivector compared with ``MAX_SIM`` on
  dot products (latepool's MaxSim; no graph, it only rescores), and the payload: the document id,
  a fingerprint of its vectors and how many there are. Its id is a UUID of the document id whose
  low 16 bits are zero (:func:`point_id`).
- vector point ``j`` holds one vector, ``token``, under Qdrant's HNSW graph (built and walked on int8
  copies, a hit rescored on the float32 vector); its id is the document point's plus ``j + 1``, so a
  vector hit names its document without a payload read.

A search finds candidates inside Qdrant, then rescores them exactly. Each query token (only
near-identical ones merged: :func:`~latepool.index.search.merge_tokens` at
:data:`TOKEN_MERGE_SIMILARITY`) asks the graph for its ``token_hits`` nearest vectors. A document's
candidate score is the sum over tokens of how far its best vector lands above the token's last hit
(what a document not found scores at most), weighted by the tokens a representative stands for
(:func:`rank_documents`). Qdrant rescores the best ``prefetch`` documents by exact MaxSim on
``colbert``. Without ``prefetch`` the search is an exact MaxSim scan. The same code talks to an
embedded local store (``path=``), a Qdrant server or a cluster (``url=``) through qdrant-client, and
to a Qdrant Edge shard (``qdrant-edge-py``, Qdrant's embedded engine): :func:`export_index` /
:func:`search_qdrant` and :func:`export_edge` / :func:`search_edge`. (The README's Qdrant section
measures this design against MUVERA encodings and Qdrant's own multivector graph.)

Exports are idempotent: exporting into an existing collection (or shard) writes only the documents
that are new or whose fingerprint changed and removes those the index no longer holds. A document's
vector points are written before its document point, which carries the fingerprint: a rerun after
an interruption writes again every document whose document point is missing, onto the same vector
point ids. A rerun after ``index add`` / ``delete`` brings the collection up to date.
:class:`QdrantCollection` is what the server searches through (and keeps in step with the index's writes);
:class:`EdgeCollection` is the same for a Qdrant Edge shard. Their ``candidates`` is the candidate stage alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import uuid
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from latepool.extras import require
from latepool.index.index import Hit, Index
from latepool.index.search import merge_tokens
from latepool.options import QDRANT_PREFETCH as PREFETCH

_NAMESPACE = uuid.UUID("6f1c3a52-8d1e-4d0b-9a53-6c9a3b7a1f20")
MULTIVECTOR, TOKEN = "colbert", "token"
FINGERPRINT, VECTORS = "fingerprint", "vectors"  # payload fields: what the vectors were written from, how many
MAX_VECTORS = (1 << 16) - 1  # a document's vector points take the low 16 bits of its point id
GRAPH_M, GRAPH_EF_CONSTRUCT = 16, 100  # the token graph's HNSW settings
# The token graph walks int8 copies of its vectors (scalar quantization, clipped at this quantile),
# kept in memory; a search's hits are then rescored on the float32 vectors, so their scores are exact.
TOKEN_INT8_QUANTILE = 0.99
TOKEN_HITS = 100  # search default: the graph's nearest vectors per query token
HNSW_EF_FACTOR = 2  # the graph search's candidate list, per hit asked for
TOKEN_MERGE_SIMILARITY = 0.97  # query tokens merged before the graph search: only near-identical ones


class QdrantUnavailableError(ValueError):
    """Qdrant could not be reached, or the collection is missing or was not written by latepool."""


@dataclass(frozen=True)
class ExportReport:
    """What an export did.

    Attributes:
        documents: Documents the collection holds for the index afterwards.
        written: Documents written (new to the collection, or changed), with their vector points.
        deleted: Documents removed (the index no longer holds them), with their vector points.
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
    """The Qdrant point id (a UUID) of a document id; its low 16 bits are zero (its vectors' ids use them)."""
    return str(uuid.UUID(int=uuid.uuid5(_NAMESPACE, doc_id).int & ~MAX_VECTORS))


def vector_point_ids(document_point: str, count: int, start: int = 0) -> list[str]:
    """The ids of a document's vector points ``start`` to ``count - 1``."""
    base = uuid.UUID(document_point).int
    return [str(uuid.UUID(int=base + j + 1)) for j in range(start, count)]


def fingerprint(vectors: Tensor) -> str:
    """A short hash of a document's float32 vectors: equal vectors, equal fingerprint."""
    return hashlib.blake2b(vectors.detach().float().cpu().numpy().tobytes(), digest_size=8).hexdigest()


def rank_documents(token_hits: list[list[tuple[Hashable, float]]], weights: list[float], limit: int) -> list:
    """The ``limit`` best documents by candidate score, from each query token's graph hits.

    A token's hits are its nearest vector points, best first, each named by its document. A document
    gains, for each token, how far its best vector among the token's hits lies above the token's last
    hit (the most a document the token did not find could score), times the token's weight (how many
    query tokens it stands for). This is the sum of MaxSim's per-token maxima with the unfound ones
    imputed at that floor.

    Args:
        token_hits: Per query token, ``(document, score)`` of each hit, best first (any hashable
            document key).
        weights: Per query token, its weight.
        limit: Documents to return.

    Returns:
        Document keys, best first.

    Example::

        >>> rank_documents([[("a", 0.9), ("b", 0.5)], [("b", 0.8), ("b", 0.7), ("a", 0.6)]], [1.0, 1.0], 2)
        ['a', 'b']
    """
    gains: dict[Hashable, float] = {}
    for hits, weight in zip(token_hits, weights):
        if not hits:
            continue
        floor, seen = hits[-1][1], set()
        for document, score in hits:  # best first: a document's first hit is its best
            if document not in seen:
                seen.add(document)
                gains[document] = gains.get(document, 0.0) + weight * (score - floor)
    return heapq.nlargest(limit, gains, key=gains.__getitem__)


def _batches(source: Index | Iterable[tuple[list[str], list[Tensor]]], batch_size: int):
    return source.documents(batch_size=batch_size) if isinstance(source, Index) else source


def _sync(source: Index | Iterable[tuple[list[str], list[Tensor]]], points: _Points, batch_size: int) -> ExportReport:
    """Write the documents of ``source`` whose document point is missing from ``points`` or holds other
    vectors, then remove the documents ``source`` does not have."""
    existing = points.fingerprints()
    documents = written = 0
    for ids, vectors in _batches(source, batch_size):
        prints = [fingerprint(v) for v in vectors]
        stale = [n for n, (i, f) in enumerate(zip(ids, prints)) if existing.pop(point_id(i), None) != f]
        if stale:
            points.write([ids[n] for n in stale], [vectors[n] for n in stale], [prints[n] for n in stale])
        documents, written = documents + len(ids), written + len(stale)
    leftover = list(existing)
    for start in range(0, len(leftover), 1024):
        points.remove(leftover[start : start + 1024])
    return ExportReport(documents, written, len(leftover))


def _point_values(ids: list[str], documents: list[Tensor], prints: list[str]):
    """``(document points, vector points)`` of documents: ``(id, multivector, payload)`` and ``(id, vector)``."""
    document_points, vector_points = [], []
    for doc_id, document, print_ in zip(ids, documents, prints):
        if len(document) > MAX_VECTORS:
            raise ValueError(f"document {doc_id!r} has {len(document)} vectors; Qdrant export takes <= {MAX_VECTORS}")
        rows = document.float().tolist()
        point = point_id(doc_id)
        document_points.append((point, rows, {"doc_id": doc_id, FINGERPRINT: print_, VECTORS: len(rows)}))
        vector_points.extend(zip(vector_point_ids(point, len(rows)), rows))
    return document_points, vector_points


class _Points:
    """What export and search need of a collection or shard; subclasses supply the Qdrant calls.

    Args (of the subclasses):
        prefetch: Candidate documents rescored by exact MaxSim (None: an exact MaxSim scan).
        token_hits: Nearest vector points each query token takes from the graph.
    """

    prefetch: int | None
    token_hits: int

    def _guard(self) -> contextlib.AbstractContextManager:
        """What every call to Qdrant runs under (a collection turns unreachable-server errors into
        :class:`QdrantUnavailableError`)."""
        return contextlib.nullcontext()

    def _upsert(self, points: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> None:
        raise NotImplementedError

    def _delete(self, point_ids: list[str]) -> None:
        raise NotImplementedError

    def _counts(self, point_ids: list[str]) -> dict[str, int]:
        """Document point id -> its vector count, for those of ``point_ids`` that exist."""
        raise NotImplementedError

    def _document_page(self, offset: Any) -> tuple[list[Any], Any]:
        """A page of document points (with the fingerprint) and the next offset, None after the last."""
        raise NotImplementedError

    def _nearest_documents(self, tokens: list[list[float]], limit: int) -> list[list[tuple[Hashable, float]]]:
        """Per token, the document (a key) and score of each of its ``limit`` nearest vector points."""
        raise NotImplementedError

    def _point_ids(self, documents: list[Hashable]) -> list[str]:
        """The document point ids of the keys :meth:`_nearest_documents` gave."""
        raise NotImplementedError

    def _maxsim(self, query: list[list[float]], k: int, among: list[str] | None) -> list[Hit]:
        """Exact MaxSim top ``k`` among these document points (None: all of them)."""
        raise NotImplementedError

    def fingerprints(self) -> dict[str, str | None]:
        """Document point id -> fingerprint of every document point."""
        found: dict[str, str | None] = {}
        offset = None
        with self._guard():
            while True:
                records, offset = self._document_page(offset)
                found.update({str(r.id): (r.payload or {}).get(FINGERPRINT) for r in records})
                if offset is None:
                    return found

    def write(self, ids: list[str], documents: list[Tensor], prints: list[str] | None = None) -> None:
        """Upsert documents: their vector points, then their document points (a replaced document's
        vector points beyond its new length are removed)."""
        prints = prints or [fingerprint(d) for d in documents]
        document_points, vector_points = _point_values(ids, documents, prints)
        with self._guard():
            self._upsert([(p, {TOKEN: v}, None) for p, v in vector_points])
            before = self._counts([p for p, _, _ in document_points])
            shorter = [
                stale
                for p, rows, _ in document_points
                if before.get(p, 0) > len(rows)
                for stale in vector_point_ids(p, before[p], start=len(rows))
            ]
            if shorter:
                self._delete(shorter)
            self._upsert([(p, {MULTIVECTOR: rows}, payload) for p, rows, payload in document_points])

    def remove(self, point_ids: list[str]) -> None:
        """Delete documents by document point id (see :func:`point_id`), their vector points first."""
        with self._guard():
            counts = self._counts(point_ids)
            self._delete([v for p in point_ids for v in vector_point_ids(p, counts.get(p, 0))])
            self._delete(point_ids)

    def delete(self, ids: list[str]) -> None:
        """Delete documents by document id."""
        self.remove([point_id(i) for i in ids])

    def candidates(self, query: Tensor, limit: int) -> list[str]:
        """The candidate stage alone: the document point ids the query tokens' graph hits rank best.

        Args:
            query: One ``(len, dim)`` query.
            limit: Documents to return (fewer when the tokens' hits name fewer).

        Returns:
            Document point ids (see :func:`point_id`), best first by :func:`rank_documents`.
        """
        representatives, weights = merge_tokens(query, TOKEN_MERGE_SIMILARITY)
        with self._guard():
            hits = self._nearest_documents(query[representatives].float().tolist(), self.token_hits)
        return self._point_ids(rank_documents(hits, weights.tolist(), limit))

    def search(self, queries: list[Tensor], k: int = 10) -> list[list[Hit]]:
        """Top-k documents of each ``(len, dim)`` query (module docstring)."""
        results = []
        for query in queries:
            among = self.candidates(query, max(self.prefetch, k)) if self.prefetch else None
            if among is not None and len(among) < k:  # a tiny collection: scan it
                among = None
            with self._guard():
                results.append(self._maxsim(query.float().tolist(), k, among))
        return results


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
        collection: Collection name; created with the ``colbert`` and ``token`` vectors (module docstring).
        batch_size: Documents per upsert.
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
                    TOKEN: models.VectorParams(
                        size=dim,
                        distance=models.Distance.DOT,
                        hnsw_config=models.HnswConfigDiff(m=GRAPH_M, ef_construct=GRAPH_EF_CONSTRUCT),
                        quantization_config=models.ScalarQuantization(
                            scalar=models.ScalarQuantizationConfig(
                                type=models.ScalarType.INT8, quantile=TOKEN_INT8_QUANTILE, always_ram=True
                            )
                        ),
                    ),
                },
                shard_number=shard_number,
                replication_factor=replication_factor,
            )
        return _sync(index, QdrantCollection(client, collection), batch_size)


def _check_collection(client, collection: str, dim: int) -> None:
    """An existing collection must have the vectors an export writes, of ``dim`` values."""
    vectors = client.get_collection(collection).config.params.vectors
    have = vectors.get(MULTIVECTOR) if isinstance(vectors, dict) else None
    if have is None or have.size != dim or TOKEN not in vectors:
        raise ValueError(
            f"Qdrant collection {collection!r} was not written by this latepool from an index of this dimension "
            f"({dim}); pass overwrite to replace it"
        )


class QdrantCollection(_Points):
    """A collection :func:`export_index` wrote, as a service uses it: search it, write and remove documents.

    Example::

        >>> collection = QdrantCollection.open(connect(url="http://localhost:6333"), "scifact")  # doctest: +SKIP
        >>> collection.search(index.encode_queries(["what is pooling?"]), k=10)  # doctest: +SKIP
    """

    def __init__(self, client, collection: str, prefetch: int | None = PREFETCH, token_hits: int = TOKEN_HITS) -> None:
        self.client, self.collection = client, collection
        self.prefetch, self.token_hits = prefetch, token_hits

    @classmethod
    def open(
        cls,
        client,
        collection: str,
        dim: int | None = None,
        prefetch: int | None = PREFETCH,
        token_hits: int = TOKEN_HITS,
    ) -> QdrantCollection:
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
        return cls(client, collection, prefetch, token_hits)

    def _guard(self) -> contextlib.AbstractContextManager:
        return _reaching()

    def count(self) -> int:
        """Documents in the collection."""
        with _reaching():
            return int(self.client.count(self.collection, count_filter=_document_points(), exact=True).count)

    def _upsert(self, points) -> None:
        from qdrant_client import models

        structs = [models.PointStruct(id=p, vector=v, payload=payload) for p, v, payload in points]
        self.client.upsert(self.collection, points=structs, wait=True)

    def _delete(self, point_ids: list[str]) -> None:
        from qdrant_client import models

        for start in range(0, len(point_ids), 65536):
            selector = models.PointIdsList(points=point_ids[start : start + 65536])
            self.client.delete(self.collection, points_selector=selector, wait=True)

    def _counts(self, point_ids: list[str]) -> dict[str, int]:
        records = self.client.retrieve(self.collection, point_ids, with_payload=[VECTORS])
        return {str(r.id): int((r.payload or {}).get(VECTORS, 0)) for r in records}

    def _document_page(self, offset):
        return self.client.scroll(
            self.collection, scroll_filter=_document_points(), limit=1024, offset=offset, with_payload=[FINGERPRINT]
        )

    def _nearest_documents(self, tokens, limit):
        from qdrant_client import models

        search = models.SearchParams(
            hnsw_ef=int(limit * HNSW_EF_FACTOR), quantization=models.QuantizationSearchParams(rescore=True)
        )
        requests = [models.QueryRequest(query=t, using=TOKEN, limit=limit, params=search) for t in tokens]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        # ids come as UUID strings: the document's is the same less its last four hex digits
        return [[(str(point.id)[:-4], point.score) for point in response.points] for response in responses]

    def _point_ids(self, documents):
        return [document + "0000" for document in documents]

    def _maxsim(self, query, k, among):
        from qdrant_client import models

        response = self.client.query_points(
            self.collection,
            query=query,
            using=MULTIVECTOR,
            query_filter=None if among is None else models.Filter(must=[models.HasIdCondition(has_id=among)]),
            limit=k,
            with_payload=["doc_id"],
            search_params=models.SearchParams(exact=True) if among is None else None,
        )
        return [Hit(point.payload["doc_id"], float(point.score)) for point in response.points]


def _document_points():
    """The qdrant-client filter that keeps document points (the ones with ``colbert``), not vector points."""
    from qdrant_client import models

    return models.Filter(must=[models.HasVectorCondition(has_vector=MULTIVECTOR)])


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
    client,
    collection: str,
    queries: list[Tensor],
    k: int = 10,
    prefetch: int | None = PREFETCH,
    dim: int | None = None,
    token_hits: int = TOKEN_HITS,
) -> list[list[Hit]]:
    """Top-k of each ``(len, dim)`` query from a collection :func:`export_index` wrote.

    Args:
        client: A ``QdrantClient``.
        collection: The collection.
        queries: Query token embeddings.
        k: Hits per query.
        prefetch: Candidate documents rescored by exact MaxSim (None: exact MaxSim over the whole collection).
        dim: The vectors' dimension, checked against the collection's when given.
        token_hits: Nearest vector points each query token takes from the graph.

    Returns:
        Per query, its hits, best first.
    """
    if dim is None:
        return QdrantCollection(client, collection, prefetch, token_hits).search(queries, k)
    return QdrantCollection.open(client, collection, dim, prefetch, token_hits).search(queries, k)


class EdgeCollection(_Points):
    """A Qdrant Edge shard :func:`export_edge` wrote, searched as :class:`QdrantCollection` searches a collection.

    Example::

        >>> shard = export_edge(Index.open("sample.idx"), "sample.edge")  # doctest: +SKIP
        >>> query = index.encode_queries(["what is pooling?"])[0]  # doctest: +SKIP
        >>> len(EdgeCollection(shard, token_hits=200).candidates(query, 800))  # doctest: +SKIP
        800
    """

    def __init__(self, shard: Any, prefetch: int | None = PREFETCH, token_hits: int = TOKEN_HITS) -> None:
        self.shard, self.prefetch, self.token_hits = shard, prefetch, token_hits

    def _upsert(self, points) -> None:
        from qdrant_edge import Point, UpdateOperation

        self.shard.update(UpdateOperation.upsert_points([Point(p, v, payload) for p, v, payload in points]))

    def _delete(self, point_ids: list[str]) -> None:
        from qdrant_edge import UpdateOperation

        if point_ids:
            self.shard.update(UpdateOperation.delete_points(point_ids))

    def _counts(self, point_ids: list[str]) -> dict[str, int]:
        records = self.shard.retrieve(point_ids, with_payload=[VECTORS], with_vector=False)
        return {str(r.id): int((r.payload or {}).get(VECTORS, 0)) for r in records}

    def _document_page(self, offset):
        from qdrant_edge import Filter, HasVectorCondition, ScrollRequest

        documents = Filter(must=[HasVectorCondition(MULTIVECTOR)])
        return self.shard.scroll(
            ScrollRequest(offset=offset, limit=1024, filter=documents, with_payload=[FINGERPRINT], with_vector=False)
        )

    def _nearest_documents(self, tokens, limit):
        from qdrant_edge import QuantizationSearchParams, Query, QueryBatchRequest, QueryRequest, SearchParams

        search = SearchParams(hnsw_ef=int(limit * HNSW_EF_FACTOR), quantization=QuantizationSearchParams(rescore=True))
        requests = [QueryRequest(limit=limit, query=Query.Nearest(t, using=TOKEN), params=search) for t in tokens]
        hits = self.shard.query_batch(QueryBatchRequest(requests))
        # ids come as uuid.UUID: the document's is the same with its low 16 bits zero
        return [[(point.id.int >> 16, point.score) for point in token] for token in hits]

    def _point_ids(self, documents):
        return [str(uuid.UUID(int=document << 16)) for document in documents]

    def _maxsim(self, query, k, among):
        from qdrant_edge import Filter, HasIdCondition, Query, QueryRequest, SearchParams

        request = QueryRequest(
            limit=k,
            query=Query.Nearest(query, using=MULTIVECTOR),
            filter=None if among is None else Filter(must=[HasIdCondition(set(among))]),
            with_payload=["doc_id"],
            params=SearchParams(exact=True) if among is None else None,
        )
        return [Hit(point.payload["doc_id"], float(point.score)) for point in self.shard.query(request)]


def export_edge(
    source: Index | Iterable[tuple[list[str], list[Tensor]]],
    path: str | Path,
    dim: int | None = None,
    batch_size: int = 256,
) -> Any:
    """Bring a Qdrant Edge shard at ``path`` up to date with the live documents of an index (or with
    ``(ids, documents)`` batches of ``dim``-dimensional documents); returns the open shard.

    A missing shard is created with the same vectors as :func:`export_index`; an existing one gets
    only what changed (module docstring). The shard is optimized (its graph built) before it is returned.

    Example::

        >>> shard = export_edge(Index.open("sample.idx"), "sample.edge")  # doctest: +SKIP
        >>> search_edge(shard, index.encode_queries(["what is pooling?"]), k=10)  # doctest: +SKIP
    """
    dim = int(source.manifest["dim"]) if isinstance(source, Index) else dim
    if not dim:
        raise ValueError("give the documents' dim when exporting batches")
    require("qdrant-edge", "Qdrant Edge export")
    shard = _open_or_create_shard(Path(path), dim)
    _sync(source, EdgeCollection(shard), batch_size)
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
        Memory,
        MultiVectorComparator,
        MultiVectorConfig,
        ScalarQuantizationConfig,
        ScalarType,
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
            TOKEN: EdgeVectorParams(
                size=dim,
                distance=Distance.Dot,
                hnsw_config=HnswIndexConfig(m=GRAPH_M, ef_construct=GRAPH_EF_CONSTRUCT, full_scan_threshold=10_000),
                quantization_config=ScalarQuantizationConfig(
                    ScalarType.Int8, quantile=TOKEN_INT8_QUANTILE, memory=Memory.Pinned
                ),
            ),
        }
    )
    return EdgeShard.create(str(path), config)


def search_edge(
    shard: Any, queries: list[Tensor], k: int = 10, prefetch: int | None = PREFETCH, token_hits: int = TOKEN_HITS
) -> list[list[Hit]]:
    """:func:`search_qdrant` on a Qdrant Edge shard written by :func:`export_edge`."""
    return EdgeCollection(shard, prefetch, token_hits).search(queries, k)
