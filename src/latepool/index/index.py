"""``latepool.Index``: a persistent, updatable index of pooled multi-vector documents with exact MaxSim search.

Example::

    from latepool import Index
    from latepool.models import load_model

    model = load_model("minilm")
    index = Index.build("scifact.idx", model, ids, texts, pool_method="kmeans", pool_factor=4)
    index = Index.open("scifact.idx")                      # the model comes from the manifest
    hits = index.search(["what causes cancer?"], k=10)     # [[(doc_id, score), ...]]
    index.add(["new"], ["a new document"]); index.delete(["old"]); index.compact()

An index is safe to read while it is updated: every search works on an immutable snapshot, and an
update swaps in a new snapshot only after its manifest is committed (see
:mod:`latepool.index.storage`).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

import latepool
from latepool.index.codec import POINTS_PER_CENTROID, RESIDUAL_BITS, Codec, default_num_centroids
from latepool.index.search import SegmentView, candidate_topk, exact_topk
from latepool.index.storage import (
    DTYPES,
    FORMAT_VERSION,
    MAX_SEGMENT_DOCUMENTS,
    IndexFormatError,
    Segment,
    read_manifest,
    read_segment,
    sha256_file,
    verify_checksums,
    write_manifest,
    write_segment,
)
from latepool.pooling import POOL_METHODS, pool_corpus

if TYPE_CHECKING:
    from sentence_transformers import MultiVectorEncoder

MIN_NPROBE = 64  # centroids probed per query token by the candidate stage, at least (see default_search)
MIN_RESCORE = 256  # candidates scored exactly per query, at least (see default_search)
EXACT_BELOW_VECTORS = 200_000  # below this many live vectors the default search is the exact scan


class Hit(NamedTuple):
    """One search result: a document id and its MaxSim score (unpacks as ``doc_id, score``)."""

    id: str
    score: float


class IndexInputError(ValueError):
    """The caller's input is not acceptable (empty texts or queries, k < 1, wrong dimensions, ...)."""


class DocumentsExistError(IndexInputError):
    """Documents with these ids are already in the index (add them with ``replace=True``)."""


class DocumentsNotFoundError(IndexInputError):
    """Ids that are not in the index."""


@dataclass
class _Snapshot:
    """One committed state of the index, never changed after it is made.

    Segments stay memory-mapped; only the manifest, ids, offsets and inverted lists are in memory.
    """

    manifest: dict[str, Any]
    segments: list[Segment]
    codec: Codec | None
    views: list[SegmentView] = field(default_factory=list)

    @classmethod
    def assemble(cls, manifest: dict[str, Any], segments: list[Segment], codec: Codec | None) -> _Snapshot:
        snapshot = cls(manifest, segments, codec)
        base = 0
        for segment in segments:
            live = np.ones(segment.count, dtype=bool)
            live[list(manifest["deleted"].get(segment.name, []))] = False
            snapshot.views.append(SegmentView(segment, live, base))
            base += segment.count
        return snapshot

    @functools.cached_property
    def ids(self) -> list[str]:
        """Live document ids, in segment order."""
        return [i for view in self.views for i, alive in zip(view.segment.ids, view.live.tolist()) if alive]

    @functools.cached_property
    def locations(self) -> dict[str, tuple[str, int]]:
        """Live id -> (segment name, position), built on first use (updates need it, searches do not)."""
        return {
            doc_id: (view.segment.name, position)
            for view in self.views
            for position, (doc_id, alive) in enumerate(zip(view.segment.ids, view.live.tolist()))
            if alive
        }

    def id_of(self, ordinal: int) -> str:
        """The id of the document at a global ordinal (see :class:`~latepool.index.search.SegmentView`)."""
        for view in self.views:
            if ordinal < view.base + view.segment.count:
                return view.segment.ids[ordinal - view.base]
        raise IndexError(ordinal)

    def live_counts(self) -> tuple[int, int]:
        """(documents, vectors) alive."""
        documents = vectors = 0
        for view in self.views:
            documents += int(view.live.sum())
            vectors += int(np.diff(view.segment.offsets)[view.live].sum())
        return documents, vectors

    def documents(self, batch_size: int = 1024) -> Iterator[tuple[list[str], list[Tensor]]]:
        """Live documents in segment order, decoded ``batch_size`` at a time: ``(ids, (n_i, dim) tensors)``."""
        for view in self.views:
            segment, offsets = view.segment, view.segment.offsets
            for start in range(0, segment.count, batch_size):
                stop = min(start + batch_size, segment.count)
                vectors = segment.decode(int(offsets[start]), int(offsets[stop]), self.codec)
                first = int(offsets[start])
                batch = [
                    (segment.ids[p], vectors[int(offsets[p]) - first : int(offsets[p + 1]) - first])
                    for p in range(start, stop)
                    if view.live[p]
                ]
                if batch:
                    yield [i for i, _ in batch], [d for _, d in batch]


class Index:
    """A pooled multi-vector index on disk; see the module docstring for an example.

    Use :meth:`build` or :meth:`open` rather than the constructor.
    """

    def __init__(self, path: Path, snapshot: _Snapshot, model: MultiVectorEncoder | str | None = None) -> None:
        self.path = Path(path)
        self._snapshot = snapshot
        self._model = model
        self._checked_model = None
        self._write_lock = threading.Lock()

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
    ) -> Index:
        """Encode, pool and write ``texts`` as a new index at ``path``.

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
            overwrite: Replace an existing index (atomically: a failure keeps the old one).
            show_progress_bar: Show encoding progress.
        """
        path = Path(path)
        _check_target(path, pool_method, dtype, overwrite)
        _check_documents(ids, texts)
        documents = encode_and_pool(model, texts, pool_method, pool_factor, batch_size, show_progress_bar)
        settings = _model_settings(model, model_name) | {
            "pool_method": pool_method,
            "pool_factor": pool_factor,
            "dtype": dtype,
        }
        return cls.from_documents(path, ids, documents, settings, centroids=centroids, overwrite=overwrite, model=model)

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
        path = Path(path)
        _check_target(path, settings["pool_method"], settings["dtype"], overwrite)
        if not ids or len(set(ids)) != len(ids) or len(ids) != len(documents):
            raise IndexInputError("give one unique id per document, and at least one document")
        if len({d.shape[1] for d in documents}) != 1 or any(d.ndim != 2 or len(d) == 0 for d in documents):
            raise IndexInputError("documents must be non-empty (n, dim) tensors of one dimension")
        manifest = {
            "format_version": FORMAT_VERSION,
            "latepool_version": latepool.__version__,
            **settings,
            "dim": int(documents[0].shape[1]),
            "segments": [],
            "deleted": {},
            "checksums": {},
            "codec": None,
        }
        bits = RESIDUAL_BITS.get(settings["dtype"], 0)
        codec = None
        if centroids or bits:
            num_centroids = num_centroids or default_num_centroids(sum(len(d) for d in documents))
            sample = _training_sample(documents, seed, limit=max(1_000_000, POINTS_PER_CENTROID * num_centroids))
            codec = Codec.train(sample, num_centroids, bits=bits, seed=seed)
        if (path / "manifest.json").is_file():  # overwrite in place: the manifest swap is the commit
            _write_contents(path, manifest, ids, documents, codec)
            return cls.open(path, model=model, verify=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
        try:
            _write_contents(staging, manifest, ids, documents, codec)
            if path.exists() and not any(path.iterdir()):
                path.rmdir()
            os.replace(staging, path)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return cls.open(path, model=model, verify=False)

    @classmethod
    def open(cls, path: str | Path, model: MultiVectorEncoder | str | None = None, *, verify: bool = True) -> Index:
        """Open an index; ``verify`` checks every file's SHA-256 against the manifest first.

        Opening maps the segments' arrays; it reads no vectors, so it costs about the same for any
        corpus size (``verify`` reads every file once).

        Args:
            path: The index directory.
            model: The query encoder, or a checkpoint name to load; loaded lazily from the manifest's
                model when None. Either way it is prepared by :func:`prepare_query_model`.
            verify: Check checksums (raises ``ValueError`` naming a missing or corrupted file).
        """
        path = Path(path)
        manifest = read_manifest(path)
        if verify:
            verify_checksums(path, manifest)
        return cls(path, _load_snapshot(path, manifest), model)

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
        """Ids of the live documents."""
        return list(self._snapshot.ids)

    def documents(self, batch_size: int = 1024) -> Iterator[tuple[list[str], list[Tensor]]]:
        """The live documents, decoded ``batch_size`` at a time: ``(ids, (n_i, dim) float32 tensors)`` pairs."""
        return self._snapshot.documents(batch_size)

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
            rescore: Candidates scored exactly per query, at least ``k`` (default: :func:`default_search`).

        Returns:
            For each query, :class:`Hit` ``(id, score)`` pairs, best first.
        """
        queries = [queries] if isinstance(queries, str) else list(queries)
        empty = [i for i, q in enumerate(queries) if not isinstance(q, str) or not q.strip()]
        if not queries or empty:
            raise IndexInputError(f"queries must be non-empty texts (empty at positions {empty})")
        embeddings = self.model().encode_query(queries, convert_to_numpy=False)
        return self.search_embeddings(
            [e.float().cpu() for e in embeddings], k, candidates=candidates, nprobe=nprobe, rescore=rescore
        )

    def search_embeddings(
        self,
        queries: list[Tensor],
        k: int = 10,
        *,
        candidates: bool | None = None,
        nprobe: int | None = None,
        rescore: int | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for already encoded ``(len_i, dim)`` queries."""
        snapshot = self._snapshot  # one consistent state for the whole call
        centroids = len(snapshot.codec.centroids) if snapshot.codec is not None else 0
        default_nprobe, default_rescore = default_search(centroids, snapshot.manifest["document_count"])
        nprobe = default_nprobe if nprobe is None else nprobe
        rescore = default_rescore if rescore is None else rescore
        if min(k, nprobe, rescore) < 1:
            raise IndexInputError(f"k, nprobe and rescore must be >= 1, got {k}, {nprobe} and {rescore}")
        if any(q.ndim != 2 or q.shape[1] != self.manifest["dim"] or len(q) == 0 for q in queries):
            raise IndexInputError(f"query embeddings must be non-empty (len, {self.manifest['dim']}) tensors")
        if not queries or snapshot.manifest["document_count"] == 0:
            return [[] for _ in queries]
        has_lists = snapshot.codec is not None and all(v.segment.ivf_offsets is not None for v in snapshot.views)
        if candidates is None:
            candidates = has_lists and snapshot.manifest["vector_count"] >= EXACT_BELOW_VECTORS
        if candidates and has_lists:
            rescore = max(rescore, k)  # at least k documents are scored exactly
            results = candidate_topk(snapshot.views, snapshot.codec, queries, k, nprobe, rescore)
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
        existing = [i for i in ids if i in self._snapshot.locations]
        if existing and not replace:
            raise DocumentsExistError(f"{len(existing)} documents already exist (first: {existing[0]!r}); use replace")
        manifest = self.manifest
        documents = encode_and_pool(
            self.model(),
            texts,
            manifest["pool_method"],
            manifest["pool_factor"],
            batch_size,
            show_progress_bar=show_progress_bar,
        )
        self.add_documents(ids, documents, replace=replace)

    def add_documents(self, ids: list[str], documents: list[Tensor], *, replace: bool = False) -> None:
        """Add already pooled documents (see :meth:`add`).

        The documents go into one new segment, coded with the index's codec and with its own
        inverted lists; no existing segment is read or rewritten.
        """
        with self._write_lock:
            snapshot = self._snapshot
            if len(set(ids)) != len(ids) or len(ids) != len(documents):
                raise IndexInputError("give one unique id per document")
            existing = [i for i in ids if i in snapshot.locations]
            if existing and not replace:
                raise DocumentsExistError(
                    f"{len(existing)} documents already exist (first: {existing[0]!r}); use replace"
                )
            if any(d.ndim != 2 or d.shape[1] != snapshot.manifest["dim"] or len(d) == 0 for d in documents):
                raise IndexInputError(f"documents must be non-empty (n, {snapshot.manifest['dim']}) tensors")
            manifest = _copy_manifest(snapshot.manifest)
            _tombstone(manifest, snapshot, existing)
            names = _write_segments(self.path, manifest, list(ids), documents, snapshot.codec)
            self._commit(manifest, snapshot.segments + [_read(self.path, n, manifest) for n in names], snapshot.codec)

    def delete(self, ids: list[str]) -> int:
        """Delete documents by id (visible to searches at once); returns how many were deleted.

        Raises :class:`DocumentsNotFoundError` when an id is not in the index.
        """
        with self._write_lock:
            snapshot = self._snapshot
            missing = [i for i in ids if i not in snapshot.locations]
            if missing:
                raise DocumentsNotFoundError(f"{len(missing)} ids are not in the index (first: {missing[0]!r})")
            manifest = _copy_manifest(snapshot.manifest)
            _tombstone(manifest, snapshot, list(dict.fromkeys(ids)))
            self._commit(manifest, snapshot.segments, snapshot.codec)
            return len(set(ids))

    def compact(self) -> None:
        """Rewrite the segments that hold deleted documents, and merge them with the small ones.

        Segments without deletions that hold at least a quarter of the live documents (or of
        ``MAX_SEGMENT_DOCUMENTS``, if fewer) stay as they are; the codec is kept (the new segments are
        coded with it).
        """
        with self._write_lock:
            snapshot = self._snapshot
            small = min(max(snapshot.manifest["document_count"], 1), MAX_SEGMENT_DOCUMENTS) / 4
            rewrite = [v for v in snapshot.views if not v.live.all() or v.segment.count < small]
            if not rewrite or (len(rewrite) == 1 and rewrite[0].live.all()):
                return
            manifest = _copy_manifest(snapshot.manifest)
            names = {v.segment.name for v in rewrite}
            ids, documents = [], []
            for view in rewrite:
                for position, document in enumerate(view.segment.documents(snapshot.codec)):
                    if view.live[position]:
                        ids.append(view.segment.ids[position])
                        documents.append(document)
            kept = [s for s in snapshot.segments if s.name not in names]
            manifest["segments"] = [s.name for s in kept]
            manifest["deleted"] = {n: p for n, p in manifest["deleted"].items() if n not in names}
            manifest["checksums"] = {k: v for k, v in manifest["checksums"].items() if k.split("/")[0] not in names}
            segments = kept
            if ids:
                names = _write_segments(self.path, manifest, ids, documents, snapshot.codec)
                segments = kept + [_read(self.path, n, manifest) for n in names]
            self._commit(manifest, segments, snapshot.codec)

    def _commit(self, manifest: dict[str, Any], segments: list[Segment], codec: Codec | None) -> None:
        snapshot = _Snapshot.assemble(manifest, segments, codec)
        _update_counts(manifest, *snapshot.live_counts())
        write_manifest(self.path, manifest)
        self._snapshot = snapshot
        _remove_unreferenced(self.path, manifest)


def default_search(centroids: int, documents: int) -> tuple[int, int]:
    """The candidate stage's ``(nprobe, rescore)`` when the caller gives none: both grow with the index.

    ``nprobe`` is 3 per 2,048 centroids and ``rescore`` 1.2 per thousand documents, at least
    :data:`MIN_NPROBE` and :data:`MIN_RESCORE`. On ``benchmarks/search_scale.py`` (2 cores, 100 real
    queries, median ms per query, settings side by side in one process): at 10k documents (16,384
    centroids) nprobe 64 finds 0.989 of the exact top 10 in 11.7 ms (nprobe 32: 0.965 in 10.7 ms); at
    100k (32,768) 0.969 in 12.3 ms; at 1M (65,536) nprobe 96 finds 0.956 with 1,200 rescored in 46.7
    ms, 0.968 with 1,500 in 51.3 ms and 0.950 with 1,024 in 45.6 ms (nprobe 128 for every token, as
    before :func:`~latepool.index.search.probe_counts`: 0.956 with 1,500 in 57.8 ms).

    Example::

        >>> default_search(16384, 10_000), default_search(65536, 1_000_000)
        ((64, 256), (96, 1200))
    """
    return max(MIN_NPROBE, centroids * 3 // 2048), max(MIN_RESCORE, documents * 3 // 2500)


def _read(root: Path, name: str, manifest: dict[str, Any]) -> Segment:
    return read_segment(root, name, manifest["dtype"], manifest["dim"])


def _load_snapshot(path: Path, manifest: dict[str, Any]) -> _Snapshot:
    segments = [_read(path, name, manifest) for name in manifest["segments"]]
    codec = None
    if manifest.get("codec"):
        try:
            codec = Codec.load(path / manifest["codec"])
        except (OSError, ValueError, KeyError) as error:
            raise IndexFormatError(f"unreadable codec {path / manifest['codec']}: {error}") from error
    return _Snapshot.assemble(manifest, segments, codec)


def _training_sample(documents: list[Tensor], seed: int, limit: int = 1_000_000) -> Tensor:
    """Up to ``limit`` vectors of the documents (whole documents, drawn under ``seed``) to train the codec on."""
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen, rows = [], 0
    for i in order:
        if rows >= limit:
            break
        chosen.append(documents[i])
        rows += len(documents[i])
    return torch.cat([d.float() for d in chosen])


def _write_contents(
    root: Path, manifest: dict[str, Any], ids: list[str], documents: list[Tensor], codec: Codec | None
) -> None:
    """Write the codec and one segment with ``documents``, commit ``manifest`` and remove what it no longer names."""
    manifest["checksums"], manifest["codec"] = {}, None
    if codec is not None:
        name = f"codec-{uuid.uuid4().hex[:12]}.npz"
        codec.save(root / name)
        manifest["codec"] = name
        manifest["checksums"][name] = sha256_file(root / name)
    manifest["segments"] = []
    _write_segments(root, manifest, list(ids), documents, codec)
    _update_counts(manifest, len(ids), sum(len(d) for d in documents))
    write_manifest(root, manifest)
    _remove_unreferenced(root, manifest)


def _write_segments(
    root: Path, manifest: dict[str, Any], ids: list[str], documents: list[Tensor], codec: Codec | None
) -> list[str]:
    """Write documents as new segments of at most ``MAX_SEGMENT_DOCUMENTS``; add them to ``manifest``.

    Returns:
        The new segments' names.
    """
    names = []
    for start in range(0, len(ids), MAX_SEGMENT_DOCUMENTS):
        name = f"seg-{uuid.uuid4().hex[:12]}"
        chunk = slice(start, start + MAX_SEGMENT_DOCUMENTS)
        manifest["checksums"].update(write_segment(root / name, ids[chunk], documents[chunk], manifest["dtype"], codec))
        manifest["segments"].append(name)
        names.append(name)
    return names


def encode_and_pool(
    model, texts: list[str], pool_method: str, pool_factor: float, batch_size: int, show_progress_bar: bool = True
) -> list[Tensor]:
    """Encode documents in chunks and pool each chunk (float32, on the CPU)."""
    documents: list[Tensor] = []
    chunk = max(batch_size * 8, 256)
    for start in tqdm(range(0, len(texts), chunk), desc="Indexing", disable=not show_progress_bar):
        embeddings = model.encode_document(texts[start : start + chunk], batch_size=batch_size, convert_to_numpy=False)
        embeddings = pool_corpus([e.float() for e in embeddings], pool_method, pool_factor, show_progress_bar=False)
        documents.extend(e.cpu() for e in embeddings)
    return documents


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
    from latepool.cache import model_fingerprint

    return {"model": str(model_name), "model_hash": model_fingerprint(model), **_model_shape(model)}


def _check_documents(ids: list[str], texts: list[str]) -> None:
    if not ids:
        raise IndexInputError("no documents given")
    if len(ids) != len(texts):
        raise IndexInputError(f"{len(ids)} ids for {len(texts)} texts")
    if len(set(ids)) != len(ids):
        raise IndexInputError("document ids must be unique")
    empty = [i for i, t in zip(ids, texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        raise IndexInputError(f"{len(empty)} documents have empty text (first: {empty[0]!r})")


def _check_target(path: Path, pool_method: str, dtype: str, overwrite: bool) -> None:
    if (path / "manifest.json").is_file() and not overwrite:
        raise ValueError(f"{path} already holds an index; pass overwrite to replace it")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    if pool_method not in POOL_METHODS:
        raise ValueError(f"pool_method must be one of {POOL_METHODS}, got {pool_method!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")


def _copy_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(manifest)


def _tombstone(manifest: dict[str, Any], snapshot: _Snapshot, ids: list[str]) -> None:
    for doc_id in ids:
        segment, position = snapshot.locations[doc_id]
        manifest["deleted"].setdefault(segment, [])
        if position not in manifest["deleted"][segment]:
            manifest["deleted"][segment].append(position)


def _update_counts(manifest: dict[str, Any], documents: int, vectors: int) -> None:
    manifest["document_count"], manifest["vector_count"] = documents, vectors


def _remove_unreferenced(root: Path, manifest: dict[str, Any]) -> None:
    """Delete segment and codec files no longer named by the committed manifest."""
    keep = set(manifest["segments"]) | {manifest.get("codec")}
    for entry in root.iterdir():
        if entry.name.startswith(("seg-", "codec-")) and entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


__all__ = [
    "DocumentsExistError",
    "DocumentsNotFoundError",
    "Hit",
    "Index",
    "IndexFormatError",
    "IndexInputError",
    "check_model",
    "encode_and_pool",
    "prepare_query_model",
]
