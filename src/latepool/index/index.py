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

import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

import latepool
from latepool.index.candidates import CandidateIndex, default_num_centroids, train_centroids
from latepool.index.storage import (
    DTYPES,
    FORMAT_VERSION,
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
from latepool.scoring import PackedDocuments, maxsim_topk


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
    """One committed state of the index, never changed after it is made."""

    manifest: dict[str, Any]
    segments: list[Segment]
    ids: list[str] = field(default_factory=list)  # live documents, in segment order
    documents: list[Tensor] = field(default_factory=list)
    locations: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (segment, position)
    packed: PackedDocuments | None = None
    candidates: CandidateIndex | None = None

    @classmethod
    def assemble(cls, manifest: dict[str, Any], segments: list[Segment], centroids: Tensor | None) -> _Snapshot:
        snapshot = cls(manifest, segments)
        deleted = {name: set(positions) for name, positions in manifest["deleted"].items()}
        for segment in segments:
            gone = deleted.get(segment.name, set())
            for position, (doc_id, vectors) in enumerate(zip(segment.ids, segment.documents())):
                if position not in gone:
                    snapshot.ids.append(doc_id)
                    snapshot.documents.append(vectors)
                    snapshot.locations[doc_id] = (segment.name, position)
        if snapshot.documents:
            snapshot.packed = PackedDocuments.pack(snapshot.documents)
            if centroids is not None:
                snapshot.candidates = CandidateIndex.build(snapshot.documents, centroids)
        return snapshot


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
            dtype: ``float16`` or ``int8`` storage.
            batch_size: Encoding batch size.
            centroids: Train the candidate-generation centroids.
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
    ) -> Index:
        """Write already pooled ``documents`` as a new index (``settings``: model, lengths, pooling, dtype)."""
        path = Path(path)
        _check_target(path, settings["pool_method"], settings["dtype"], overwrite)
        if not ids or len(set(ids)) != len(ids) or len(ids) != len(documents):
            raise ValueError("give one unique id per document, and at least one document")
        if len({d.shape[1] for d in documents}) != 1:
            raise ValueError("documents must share one embedding dimension")
        manifest = {
            "format_version": FORMAT_VERSION,
            "latepool_version": latepool.__version__,
            **settings,
            "dim": int(documents[0].shape[1]),
            "segments": [],
            "deleted": {},
            "checksums": {},
            "centroids": None,
        }
        if (path / "manifest.json").is_file():  # overwrite in place: the manifest swap is the commit
            _write_contents(path, manifest, ids, documents, centroids)
            return cls.open(path, model=model, verify=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
        try:
            _write_contents(staging, manifest, ids, documents, centroids)
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
        return cls(path, cls._load_snapshot(path, manifest), model)

    @staticmethod
    def _load_snapshot(path: Path, manifest: dict[str, Any]) -> _Snapshot:
        segments = [read_segment(path, name, manifest["dtype"], manifest["dim"]) for name in manifest["segments"]]
        centroids = torch.load(path / manifest["centroids"]) if manifest.get("centroids") else None
        return _Snapshot.assemble(manifest, segments, centroids)

    # ----- reading -----------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        return self._snapshot.manifest

    def __len__(self) -> int:
        return len(self._snapshot.ids)

    @property
    def ids(self) -> list[str]:
        """Ids of the live documents."""
        return list(self._snapshot.ids)

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
        candidates: bool = False,
        nprobe: int = 64,
        rescore: int = 2048,
    ) -> list[list[Hit]]:
        """Top-k documents of each query text by MaxSim (exact, or over generated candidates).

        Args:
            queries: Query texts (non-empty).
            k: Hits per query.
            candidates: Use the centroid candidate stage (for large indexes) before exact scoring.
            nprobe: Centroids probed per query token.
            rescore: Candidates scored exactly per query.

        Returns:
            For each query, ``(doc_id, score)`` pairs, best first.
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
        self, queries: list[Tensor], k: int = 10, *, candidates: bool = False, nprobe: int = 64, rescore: int = 2048
    ) -> list[list[Hit]]:
        """:meth:`search` for already encoded ``(len_i, dim)`` queries."""
        snapshot = self._snapshot  # one consistent state for the whole call
        if k < 1:
            raise IndexInputError(f"k must be >= 1, got {k}")
        if any(q.ndim != 2 or q.shape[1] != self.manifest["dim"] for q in queries):
            raise IndexInputError(f"query embeddings must be (len, {self.manifest['dim']}) tensors")
        if snapshot.packed is None:
            return [[] for _ in queries]
        if candidates and snapshot.candidates is not None:
            return [self._search_candidates(snapshot, q, k, nprobe, rescore) for q in queries]
        scores, indices = maxsim_topk(queries, snapshot.packed, k)
        return [
            [Hit(snapshot.ids[i], s) for s, i in zip(row_s, row_i)]
            for row_s, row_i in zip(scores.tolist(), indices.tolist())
        ]

    @staticmethod
    def _search_candidates(snapshot: _Snapshot, query: Tensor, k: int, nprobe: int, rescore: int) -> list[Hit]:
        docs = snapshot.candidates.candidates(query, nprobe, max(rescore, k))
        if len(docs) == 0:
            return []
        scores, best = snapshot.candidates.rescore(query, docs, k)
        return [Hit(snapshot.ids[d], s) for s, d in zip(scores.tolist(), best.tolist())]

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
        """Add already pooled documents (see :meth:`add`)."""
        with self._write_lock:
            snapshot = self._snapshot
            existing = [i for i in ids if i in snapshot.locations]
            if existing and not replace:
                raise DocumentsExistError(
                    f"{len(existing)} documents already exist (first: {existing[0]!r}); use replace"
                )
            if any(d.ndim != 2 or d.shape[1] != snapshot.manifest["dim"] for d in documents):
                raise IndexInputError(f"documents must be (n, {snapshot.manifest['dim']}) tensors")
            manifest = _copy_manifest(snapshot.manifest)
            _tombstone(manifest, snapshot, existing)
            name = f"seg-{uuid.uuid4().hex[:12]}"
            manifest["checksums"].update(write_segment(self.path / name, list(ids), documents, manifest["dtype"]))
            manifest["segments"].append(name)
            self._commit(
                manifest, snapshot.segments + [read_segment(self.path, name, manifest["dtype"], manifest["dim"])]
            )

    def delete(self, ids: list[str]) -> int:
        """Delete documents by id (visible to searches at once); returns how many were deleted.

        Raises ``ValueError`` when an id is not in the index.
        """
        with self._write_lock:
            snapshot = self._snapshot
            missing = [i for i in ids if i not in snapshot.locations]
            if missing:
                raise DocumentsNotFoundError(f"{len(missing)} ids are not in the index (first: {missing[0]!r})")
            manifest = _copy_manifest(snapshot.manifest)
            _tombstone(manifest, snapshot, list(dict.fromkeys(ids)))
            self._commit(manifest, snapshot.segments)
            return len(set(ids))

    def compact(self) -> None:
        """Rewrite the live documents into one segment (reclaims deleted space, retrains centroids)."""
        with self._write_lock:
            snapshot = self._snapshot
            manifest = _copy_manifest(snapshot.manifest)
            manifest.update(deleted={}, centroids=None)
            _write_contents(
                self.path,
                manifest,
                snapshot.ids,
                snapshot.documents,
                centroids=bool(snapshot.manifest.get("centroids")),
                commit=False,
            )
            self._commit(
                manifest, [read_segment(self.path, n, manifest["dtype"], manifest["dim"]) for n in manifest["segments"]]
            )

    def _commit(self, manifest: dict[str, Any], segments: list[Segment]) -> None:
        centroids = torch.load(self.path / manifest["centroids"]) if manifest.get("centroids") else None
        snapshot = _Snapshot.assemble(manifest, segments, centroids)
        _update_counts(manifest, len(snapshot.ids), sum(len(d) for d in snapshot.documents))
        write_manifest(self.path, manifest)
        self._snapshot = snapshot
        _remove_unreferenced(self.path, manifest)


def _write_contents(
    root: Path, manifest: dict[str, Any], ids: list[str], documents: list[Tensor], centroids: bool, commit: bool = True
) -> None:
    """Write one segment with ``documents`` (and new centroids) and point ``manifest`` at them.

    With ``commit`` the manifest is also written and files it no longer names are removed.
    """
    segment = f"seg-{uuid.uuid4().hex[:12]}"
    manifest["checksums"] = write_segment(root / segment, list(ids), documents, manifest["dtype"])
    manifest["segments"] = [segment]
    if centroids and documents:
        vectors = torch.cat([d.float() for d in documents])
        name = f"centroids-{uuid.uuid4().hex[:12]}.pt"
        torch.save(train_centroids(vectors, default_num_centroids(len(vectors))), root / name)
        manifest["centroids"] = name
        manifest["checksums"][name] = sha256_file(root / name)
    if commit:
        _update_counts(manifest, len(ids), sum(len(d) for d in documents))
        write_manifest(root, manifest)
        _remove_unreferenced(root, manifest)


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
    """Delete segment and centroid files no longer named by the committed manifest."""
    keep = set(manifest["segments"]) | {manifest.get("centroids")}
    for entry in root.iterdir():
        if (entry.name.startswith("seg-") or entry.name.startswith("centroids-")) and entry.name not in keep:
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
