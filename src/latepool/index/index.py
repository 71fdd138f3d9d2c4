"""``latepool.Index``: a persistent, updatable index of pooled multi-vector documents with exact MaxSim search.

Example::

    from latepool import Index
    from latepool.models import load_model

    model = load_model("minilm")
    index = Index.build("scifact.idx", model, ids, texts, pool_method="kmeans", pool_factor=4)
    index = Index.open("scifact.idx")                      # the model comes from the manifest
    hits = index.search(["what causes cancer?"], k=10)     # [[(doc_id, score), ...]]
    index.add(["new"], ["a new document"]); index.delete(["old"]); index.compact()
    index.refresh()                                        # see what other processes committed

An :class:`Index` is a reader with a text front end: every search works on an immutable
snapshot (:mod:`latepool.index.snapshot`), so a search never sees half a change. Changes go
through :mod:`latepool.index.writer`, one writer at a time across processes, each applied to the
latest commit; the handle then holds the committed state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from torch import Tensor
from tqdm.auto import tqdm

from latepool.fingerprints import model_fingerprint, texts_fingerprint
from latepool.index import writer
from latepool.index.codec import Codec
from latepool.index.errors import IndexInputError, count_of, documents_exist
from latepool.index.search import candidate_topk, exact_topk
from latepool.index.snapshot import Snapshot, open_snapshot, refreshed
from latepool.index.storage import MAX_SEGMENT_DOCUMENTS
from latepool.memory import release_freed_memory
from latepool.options import DTYPES, POOL_METHODS, RESIDUAL_BITS
from latepool.pooling import pool_corpus

if TYPE_CHECKING:
    from sentence_transformers import MultiVectorEncoder

MIN_NPROBE = 64  # centroids probed per query token by the candidate stage, at least (see default_search)
WHOLE_VECTOR_PROBES = 8  # a float16 / int8 index probes this many times more lists (see default_search)
MIN_RESCORE = 256  # candidates scored exactly per query first, at least (see default_search)
RESCORE_VECTORS = 16384  # and about this many stored vectors (see default_search)
MIN_RESCORE_LIMIT = 2048  # candidates the stopping rule may score exactly, at least (see default_search)
RESCORE_LIMIT_PER_THOUSAND = 4  # and per thousand documents
EXACT_BELOW_VECTORS = 200_000  # below this many live vectors the default search is the exact scan
TEXT_COMMIT_EVERY = 1024  # a build from text commits (and can resume) every this many documents


class Hit(NamedTuple):
    """One search result: a document id and its MaxSim score (unpacks as ``doc_id, score``)."""

    id: str
    score: float


class Index:
    """A pooled multi-vector index on disk; see the module docstring for an example.

    Use :meth:`build`, :meth:`from_batches` or :meth:`open` rather than the constructor.
    """

    def __init__(self, path: Path, snapshot: Snapshot, model: MultiVectorEncoder | str | None = None) -> None:
        self.path = Path(path)
        self._snapshot = snapshot
        self._model = model
        self._checked_model = None
        self._write_lock = threading.Lock()  # orders this process's writers; the file lock orders processes

    # ----- creation and loading -------------------------------------------------------------
    @classmethod
    def build(
        cls,
        path: str | Path,
        model: MultiVectorEncoder,
        ids: list[str],
        texts: list[str],
        *,
        model_name: str = "",
        pool_method: str = "kmeans",
        pool_factor: float = 4,
        dtype: str = "float16",
        batch_size: int = 32,
        centroids: bool = True,
        overwrite: bool = False,
        show_progress_bar: bool = True,
        commit_every: int = TEXT_COMMIT_EVERY,
    ) -> Index:
        """Encode, pool and write ``texts`` as a new index at ``path``, chunk by chunk.

        Memory stays flat as the corpus grows: each chunk of texts is encoded, pooled and written
        before the next. The build commits every ``commit_every`` documents; a build that was
        killed continues from its last commit when called again with the same arguments (the
        documents it committed are not encoded again).

        Args:
            path: Index directory; refused if it already holds an index, unless ``overwrite``.
            model: The ``MultiVectorEncoder`` that encodes documents (and later queries).
            ids / texts: Documents (ids unique, texts non-empty).
            model_name: Name or path recorded in the manifest (used by :meth:`open`).
            pool_method / pool_factor: Pooling of the documents (factor 1: unpooled).
            dtype: ``float16``, ``int8``, or residual coding ``residual4`` / ``residual2`` / ``residual1``
                (see :mod:`latepool.index.codec`).
            batch_size: Encoding batch size.
            centroids: Train the centroids and inverted lists of the candidate stage (residual
                dtypes always have them).
            overwrite: Start over: discard a partial build, and replace an index at ``path`` (which
                stays readable until the new one is committed).
            show_progress_bar: Show a progress bar over documents.
            commit_every: Documents between commits.
        """
        path = Path(path)
        _check_settings(pool_method, pool_factor, dtype)
        _check_documents(ids, texts)
        settings = _model_settings(model, model_name) | {
            "pool_method": pool_method,
            "pool_factor": pool_factor,
            "dtype": dtype,
        }
        chunk = max(batch_size * 8, 256)
        start = writer.IndexBuilder.start(
            path,
            settings,
            source=texts_fingerprint(ids, texts),
            centroids=centroids,
            expected_documents=len(ids),
            commit_every=commit_every,
            overwrite=overwrite,
        )
        with start as builder:
            progress = tqdm(
                total=len(ids), initial=builder.done, unit="doc", desc="Indexing", disable=not show_progress_bar
            )
            for first in range(builder.done, len(ids), chunk):
                documents = encode_and_pool(model, texts[first : first + chunk], pool_method, pool_factor, batch_size)
                builder.add(ids[first : first + chunk], documents)
                progress.update(len(documents))
                del documents
                release_freed_memory()  # each chunk's freed tensors, so memory does not grow with the corpus
            progress.close()
            snapshot = builder.finish()
        return cls(path, snapshot, model)

    @classmethod
    def from_documents(
        cls,
        path: str | Path,
        ids: list[str],
        documents: list[Tensor],
        settings: dict[str, Any],
        *,
        centroids: bool = True,
        overwrite: bool = False,
        model: MultiVectorEncoder | None = None,
        num_centroids: int | None = None,
        seed: int = 0,
    ) -> Index:
        """Write already pooled ``documents`` as a new index (``settings``: model, lengths, pooling, dtype).

        ``num_centroids`` and ``seed`` set the codec's training. The default count is
        :func:`~latepool.index.codec.default_num_centroids` of these documents' vectors; an index
        that will grow by ``add`` does better with the count for its final size, since the codec
        is kept.
        """
        if not ids or len(set(ids)) != len(ids) or len(ids) != len(documents):
            raise IndexInputError("give one unique id per document, and at least one document")
        if len({d.shape[-1] for d in documents}) != 1 or any(d.ndim != 2 or len(d) == 0 for d in documents):
            raise IndexInputError("documents must be non-empty (n, dim) tensors of one dimension")
        return cls.from_batches(
            path,
            [(ids, documents)],
            settings,
            expected_documents=len(ids),
            centroids=centroids,
            overwrite=overwrite,
            model=model,
            num_centroids=num_centroids,
            seed=seed,
        )

    @classmethod
    def from_batches(
        cls,
        path: str | Path,
        batches: Iterable[tuple[list[str], list[Tensor]]],
        settings: dict[str, Any],
        *,
        expected_documents: int | None = None,
        num_centroids: int | None = None,
        centroids: bool = True,
        overwrite: bool = False,
        model: MultiVectorEncoder | None = None,
        seed: int = 0,
        commit_every: int = MAX_SEGMENT_DOCUMENTS,
        source: str = "",
        show_progress_bar: bool = False,
    ) -> Index:
        """Write a stream of already pooled documents as a new index, one segment at a time.

        The codec is trained on a sample from the stream's first documents (at least a million
        vectors, or 32 per centroid), so memory holds that sample and one open segment, not the
        corpus. Rerun after an interruption with the same stream and arguments, the build skips
        what it committed and continues.

        Args:
            path: Index directory (see :meth:`build` for ``overwrite``).
            batches: ``(ids, documents)`` pairs, each document a non-empty ``(n_i, dim)`` tensor.
            settings: ``pool_method``, ``pool_factor``, ``dtype`` and the model's ``model``,
                ``model_hash``, ``query_length``, ``document_length``.
            expected_documents: The stream's size, if known (sets the default centroid count).
            num_centroids: Centroid count (default: :func:`~latepool.index.codec.default_num_centroids`
                of the expected vectors, else of the sample's).
            centroids: Train the candidate stage's centroids (residual dtypes always have them).
            overwrite: Start over (see :meth:`build`).
            model: The query encoder to attach to the returned handle.
            seed: Seed of the codec's sample and training.
            commit_every: Documents between commits (at most one segment).
            source: Identifies the stream: a partial build is resumed only by one of the same source.
            show_progress_bar: Show a progress bar over documents.

        Example::

            >>> import tempfile, torch
            >>> batches = [([f"d{b}-{i}" for i in range(50)], [torch.randn(5, 8) for _ in range(50)]) for b in range(3)]
            >>> settings = {"model": "", "pool_method": "kmeans", "pool_factor": 2, "dtype": "residual2"}
            >>> index = Index.from_batches(tempfile.mkdtemp() + "/idx", batches, settings, expected_documents=150)
            >>> len(index), index.manifest["vector_count"]
            (150, 750)
        """
        _check_settings(settings.get("pool_method"), settings.get("pool_factor"), settings.get("dtype"))
        progress = tqdm(total=expected_documents, unit="doc", desc="Indexing", disable=not show_progress_bar)
        snapshot = writer.build_from_batches(
            path,
            batches,
            settings,
            progress=progress,
            source=source,
            centroids=centroids,
            expected_documents=expected_documents,
            num_centroids=num_centroids,
            seed=seed,
            commit_every=commit_every,
            overwrite=overwrite,
        )
        progress.close()
        return cls(Path(path), snapshot, model)

    @classmethod
    def open(cls, path: str | Path, model: MultiVectorEncoder | str | None = None, *, verify: bool = False) -> Index:
        """Open an index: read its manifest and map its files, checking their shapes and sizes.

        Opening reads no vectors, so it costs about the same for any corpus size; ``verify`` also
        checks every file's SHA-256 against the manifest, which reads every byte
        (``latepool index verify``).

        Args:
            path: The index directory.
            model: The query encoder, or a checkpoint name to load; loaded lazily from the manifest's
                model when None. Either way it is prepared by :func:`prepare_query_model`.
            verify: Check checksums (raises ``ValueError`` naming a missing or corrupted file).
        """
        path = Path(path)
        return cls(path, open_snapshot(path, verify=verify), model)

    def refresh(self) -> bool:
        """Move to the latest commit (another process's, say); returns whether the state changed.

        Costs one ``stat`` when nothing was committed; segments the two states share are not read again.
        """
        with self._write_lock:
            before = self._snapshot
            self._snapshot = refreshed(self.path, before)
            return self._snapshot is not before

    # ----- reading -----------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        return self._snapshot.manifest

    def __len__(self) -> int:
        return int(self.manifest["document_count"])

    @property
    def codec(self) -> Codec | None:
        """The codec: the centroids of the inverted lists and the residual buckets (None without centroids)."""
        return self._snapshot.codec

    @property
    def ids(self) -> list[str]:
        """Ids of the live documents, in segment order: the snapshot's own list (built once; copy it to change it)."""
        return self._snapshot.ids

    def documents(self, batch_size: int = 1024) -> Iterator[tuple[list[str], list[Tensor]]]:
        """The live documents, decoded ``batch_size`` at a time: ``(ids, (n_i, dim) float32 tensors)`` pairs."""
        return self._snapshot.documents(batch_size)

    def vectors_of(self, ids: list[str]) -> list[Tensor]:
        """The stored (decoded) vectors of live documents, in the order of ``ids``."""
        return self._snapshot.vectors_of(ids)

    def model(self) -> MultiVectorEncoder:
        """The query (and document) encoder: the one given, or the manifest's, prepared once."""
        if self._model is None:
            self._model = self.manifest.get("model") or ""
            if not self._model:
                raise ValueError(f"{self.path}: the manifest names no model; pass one to Index.open(model=...)")
        if self._model is not self._checked_model:  # once per model, not on every search
            self._model = prepare_query_model(self._model, self.manifest)
            self._checked_model = self._model
        return self._model

    def search(
        self,
        queries: str | list[str],
        k: int = 10,
        *,
        candidates: bool | None = None,
        nprobe: int | None = None,
        rescore: int | None = None,
        rescore_limit: int | None = None,
    ) -> list[list[Hit]]:
        """Top-k documents of each query text by MaxSim.

        Args:
            queries: Query texts (non-empty).
            k: Hits per query.
            candidates: Use the candidate stage (inverted lists, then exact MaxSim of the best
                ``rescore``); False scans exactly; None (default) chooses: exact below
                :data:`EXACT_BELOW_VECTORS` live vectors or without inverted lists, candidates above.
            nprobe: Centroids probed per distinct query token, on average (see
                :func:`~latepool.index.search.probe_counts`; default: by the index's size, :func:`default_search`).
            rescore: Candidates scored exactly per query first, at least ``k`` (default: :func:`default_search`).
            rescore_limit: Candidates scored exactly at most: after the first ``rescore``, the next best are
                scored in rounds while one could still enter the top k (see
                :func:`~latepool.index.search.still_open`). Default: :func:`default_search`; a value
                ``<= rescore`` (0, say) turns the rule off and scores exactly ``rescore``.

        Returns:
            For each query, :class:`Hit` ``(id, score)`` pairs, best first.

        Example::

            >>> index.search("what pooling does to recall", k=5)  # doctest: +SKIP
        """
        queries = [queries] if isinstance(queries, str) else list(queries)
        empty = [i for i, q in enumerate(queries) if not isinstance(q, str) or not q.strip()]
        if not queries or empty:
            raise IndexInputError(f"queries must be non-empty texts (empty at positions {empty})")
        return self.search_embeddings(
            self.encode_queries(queries),
            k,
            candidates=candidates,
            nprobe=nprobe,
            rescore=rescore,
            rescore_limit=rescore_limit,
        )

    def encode_queries(self, queries: list[str]) -> list[Tensor]:
        """Query texts as the index searches them: ``(len, dim)`` float32 tensors on the CPU, never pooled."""
        return [e.float().cpu() for e in self.model().encode_query(queries, convert_to_numpy=False)]

    def search_defaults(self) -> SearchDefaults:
        """The candidate stage's settings a search without them uses (see :func:`default_search`)."""
        return _search_defaults(self._snapshot)

    def search_embeddings(
        self,
        queries: list[Tensor],
        k: int = 10,
        *,
        candidates: bool | None = None,
        nprobe: int | None = None,
        rescore: int | None = None,
        rescore_limit: int | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for already encoded ``(len_i, dim)`` queries."""
        snapshot = self._snapshot  # one consistent state for the whole call
        defaults = _search_defaults(snapshot)
        nprobe = defaults.nprobe if nprobe is None else nprobe
        rescore = defaults.rescore if rescore is None else rescore
        rescore_limit = defaults.rescore_limit if rescore_limit is None else rescore_limit
        for name, value in (("k", k), ("nprobe", nprobe), ("rescore", rescore)):
            if value < 1:
                raise IndexInputError(f"{name} must be >= 1, got {value}")
        if rescore_limit < 0:
            raise IndexInputError(f"rescore_limit must be >= 0, got {rescore_limit}")
        if any(q.ndim != 2 or q.shape[1] != self.manifest["dim"] or len(q) == 0 for q in queries):
            raise IndexInputError(f"query embeddings must be non-empty (len, {self.manifest['dim']}) tensors")
        if not queries or snapshot.manifest["document_count"] == 0:
            return [[] for _ in queries]
        has_lists = snapshot.codec is not None and all(v.segment.ivf_offsets is not None for v in snapshot.views)
        if candidates is None:
            candidates = has_lists and snapshot.manifest["vector_count"] >= EXACT_BELOW_VECTORS
        if candidates and has_lists:
            rescore = max(rescore, k)  # at least k documents are scored exactly
            results = candidate_topk(snapshot.views, snapshot.codec, queries, k, nprobe, rescore, rescore_limit)
        else:
            scores, ordinals = exact_topk(snapshot.views, snapshot.codec, queries, k)
            results = list(zip(scores, ordinals))
        return [
            [Hit(snapshot.id_of(int(o)), float(s)) for s, o in zip(row_s.tolist(), row_o.tolist())]
            for row_s, row_o in results
        ]

    # ----- updates -----------------------------------------------------------------------------
    def add(
        self,
        ids: list[str],
        texts: list[str],
        *,
        replace: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool = True,
    ) -> None:
        """Encode, pool and add documents; an existing id is an error unless ``replace``.

        Args:
            ids: New document ids.
            texts: Their texts.
            replace: Replace documents whose id exists (else :class:`DocumentsExistError`).
            batch_size: Encoding batch size.
            show_progress_bar: Show encoding progress.
        """
        _check_documents(ids, texts)
        self.refresh()
        existing = [i for i in ids if i in self._snapshot.locations]
        if existing and not replace:  # fail before encoding; the writer checks again under its lock
            raise documents_exist(existing)
        manifest = self.manifest
        documents = encode_and_pool(
            self.model(), texts, manifest["pool_method"], manifest["pool_factor"], batch_size, show_progress_bar
        )
        self.add_documents(ids, documents, replace=replace)

    def add_documents(self, ids: list[str], documents: list[Tensor], *, replace: bool = False) -> None:
        """Add already pooled documents (see :meth:`add`).

        The documents go into new segments, coded with the index's codec and with their own
        inverted lists; no existing segment is read or rewritten.
        """
        with self._write_lock:
            self._snapshot = writer.add_documents(self.path, ids, documents, replace=replace, current=self._snapshot)

    def delete(self, ids: list[str]) -> int:
        """Delete documents by id (visible to searches at once); returns how many were deleted.

        Raises :class:`DocumentsNotFoundError` when an id is not in the index (nothing is deleted).
        """
        with self._write_lock:
            self._snapshot, deleted = writer.delete(self.path, ids, current=self._snapshot)
            return deleted

    def compact(self) -> None:
        """Rewrite the segments that hold deleted documents, merged with the small ones (see
        :func:`latepool.index.writer.compact`: stored vectors are copied bit for bit)."""
        with self._write_lock:
            self._snapshot = writer.compact(self.path, current=self._snapshot)


class SearchDefaults(NamedTuple):
    """The candidate stage's settings when the caller gives none (see :func:`default_search`)."""

    nprobe: int
    rescore: int
    rescore_limit: int


def default_search(
    centroids: int, documents: int, whole_vectors: bool = False, vectors: int | None = None
) -> SearchDefaults:
    """The candidate stage's ``(nprobe, rescore, rescore_limit)`` when the caller gives none.

    ``nprobe`` is 3 per 2,048 centroids, at least :data:`MIN_NPROBE`: a larger index has more
    centroids, each list holding about the same number of rows. An index of whole vectors (float16,
    int8) probes :data:`WHOLE_VECTOR_PROBES` times more: its rows are scored exactly, and the rows
    that decide its exact top k lie farther down each token's centroid order than the rows of a
    residual index, which are decoded around their centroid. ``rescore`` (scored exactly first)
    is :data:`MIN_RESCORE` documents, or more where documents are short: as many as hold about
    :data:`RESCORE_VECTORS` stored vectors (``vectors`` in all, when given), since rescoring costs
    by the vector and short documents (chunks) tie in larger numbers. Then the stopping rule scores
    more where candidates could still enter the top k, up to ``rescore_limit``:
    :data:`RESCORE_LIMIT_PER_THOUSAND` per thousand documents, at least :data:`MIN_RESCORE_LIMIT` (and
    ``rescore``), since a larger index has more documents that tie near the top.
    The rates were chosen on ``benchmarks/search_scale.py``'s proxies (the README's scale table).

    Example::

        >>> default_search(16384, 10_000)
        SearchDefaults(nprobe=64, rescore=256, rescore_limit=2048)
        >>> default_search(65536, 1_000_000)
        SearchDefaults(nprobe=96, rescore=256, rescore_limit=4000)
        >>> default_search(32768, 100_000, whole_vectors=True)
        SearchDefaults(nprobe=512, rescore=256, rescore_limit=2048)
        >>> default_search(65536, 1_000_000, vectors=16_000_000)  # 16 vectors per document
        SearchDefaults(nprobe=96, rescore=1024, rescore_limit=4000)
    """
    limit = max(MIN_RESCORE_LIMIT, documents * RESCORE_LIMIT_PER_THOUSAND // 1000)
    nprobe = max(MIN_NPROBE, centroids * 3 // 2048) * (WHOLE_VECTOR_PROBES if whole_vectors else 1)
    rescore = max(MIN_RESCORE, RESCORE_VECTORS * documents // vectors) if vectors else MIN_RESCORE
    return SearchDefaults(nprobe, rescore, max(limit, rescore))


def _search_defaults(snapshot: Snapshot) -> SearchDefaults:
    """:func:`default_search` for an index's state: its centroids, documents, dtype and vectors."""
    manifest = snapshot.manifest
    centroids = len(snapshot.codec.centroids) if snapshot.codec is not None else 0
    whole_vectors = manifest["dtype"] not in RESIDUAL_BITS
    return default_search(centroids, manifest["document_count"], whole_vectors, manifest["vector_count"])


def encode_and_pool(
    model, texts: list[str], pool_method: str, pool_factor: float, batch_size: int, show_progress_bar: bool = False
) -> list[Tensor]:
    """Encode documents and pool them (float32, on the CPU); callers pass a chunk of texts at a time."""
    embeddings = model.encode_document(
        texts, batch_size=batch_size, convert_to_numpy=False, show_progress_bar=show_progress_bar
    )
    pooled = pool_corpus([e.float() for e in embeddings], pool_method, pool_factor, show_progress_bar=False)
    return [e.cpu() for e in pooled]


def prepare_query_model(model: MultiVectorEncoder | str, manifest: dict[str, Any]) -> MultiVectorEncoder:
    """The one place an index's encoder is made ready: load it, set the index's lengths, check it.

    Args:
        model: A ``MultiVectorEncoder`` (its lengths are set in place) or a name for
            :func:`latepool.models.load_model`.
        manifest: The index's manifest (``query_length``, ``document_length``, ``dim``).

    Returns:
        The model, with the query and document lengths the index was built with.

    Raises:
        ValueError: The model's embedding dimension differs from the index's.
    """
    from latepool.models import load_model, set_lengths

    if isinstance(model, (str, Path)):
        model = load_model(model)
    set_lengths(model, manifest.get("query_length"), manifest.get("document_length"))
    check_model(model, manifest)
    return model


def check_model(model: MultiVectorEncoder, manifest: dict[str, Any]) -> None:
    """Raise ``ValueError`` when ``model``'s dimension or lengths differ from the index's."""
    settings = _model_shape(model)
    for key in ("dim", "query_length", "document_length"):
        if manifest.get(key) is not None and settings.get(key) is not None and settings[key] != manifest[key]:
            raise ValueError(f"the model's {key} is {settings[key]}, the index was built with {manifest[key]}")


def _model_shape(model: MultiVectorEncoder) -> dict[str, Any]:
    """The settings an index depends on: embedding dimension, query and document lengths."""
    from latepool.models import query_length_of

    transformer = model[0]
    return {
        "query_length": query_length_of(transformer),
        "document_length": getattr(transformer, "document_length", None),
        "dim": model.get_embedding_dimension(),
    }


def _model_settings(model: MultiVectorEncoder, model_name: str) -> dict[str, Any]:
    """What a manifest records about the model: name, weights hash and shape."""
    return {"model": str(model_name), "model_hash": model_fingerprint(model), **_model_shape(model)}


def _check_documents(ids: list[str], texts: list[str]) -> None:
    if not ids:
        raise IndexInputError("no documents given")
    if len(ids) != len(texts):
        raise IndexInputError(f"{count_of(len(ids), 'id')} for {count_of(len(texts), 'text')}")
    if len(set(ids)) != len(ids):
        raise IndexInputError("document ids must be unique")
    empty = [i for i, t in zip(ids, texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        raise IndexInputError(f"{count_of(len(empty), 'document')} with empty text (first: {empty[0]!r})")


def _check_settings(pool_method: str | None, pool_factor: float | None, dtype: str | None) -> None:
    if pool_method not in POOL_METHODS:
        raise ValueError(f"pool_method must be one of {POOL_METHODS}, got {pool_method!r}")
    if pool_factor is not None and (not isinstance(pool_factor, (int, float)) or pool_factor < 1):
        raise ValueError(f"pool_factor must be a number >= 1, got {pool_factor!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
