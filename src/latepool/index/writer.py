"""Writing an index: every change is a transaction on the latest commit, one writer at a time across processes.

A change (:func:`add_documents`, :func:`delete`, :func:`compact`, or a build through
:class:`IndexBuilder`) runs as:

1. take the index's writer lock (:func:`~latepool.index.locks.writer_lock`), held until step 4;
2. read the latest committed manifest from disk, never a handle's own (possibly stale) snapshot,
   and apply the change to it;
3. write the new files (segments, codec) and fsync them and their directory;
4. commit: replace the manifest (fsynced, then the directory);
5. remove files that no manifest names, unless a reader is opening the index at that moment (then
   a later commit does it). A failed removal is logged, never raised: the commit has happened.

Readers never take the writer lock, so a search never waits for a writer and never fails because
one committed (see :mod:`latepool.index.snapshot`).

A build commits as it goes to ``partial.json``, never to ``manifest.json``, until it finishes:
documents that arrive before the codec can be trained are kept as *pending* chunks (float32, exact),
the codec is trained on a sample of them, and from then on documents are encoded and written as
segments. A build killed at any point restarts from its last commit: rerun it with the same
documents and settings and :attr:`IndexBuilder.done` says how many of the stream's first documents
to skip.

Example::

    from latepool.index.writer import IndexBuilder

    with IndexBuilder.start(path, settings, expected_documents=len(ids)) as builder:
        for start in range(builder.done, len(ids), 10_000):     # skip what a killed run committed
            builder.add(ids[start : start + 10_000], documents[start : start + 10_000])
        snapshot = builder.finish()
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latepool.index.codec import POINTS_PER_CENTROID, Codec, default_num_centroids
from latepool.index.errors import DocumentsNotFoundError, IndexInputError, count_of, documents_exist
from latepool.index.locks import no_readers_opening, writer_lock
from latepool.index.snapshot import Snapshot, load_snapshot, manifest_stamp, open_snapshot, refreshed
from latepool.index.storage import (
    DTYPES,
    FORMAT_VERSION,
    MANIFEST,
    MAX_SEGMENT_DOCUMENTS,
    PARTIAL,
    IndexFormatError,
    Segment,
    SegmentBuffer,
    fsync_directory,
    fsync_file,
    read_manifest,
    read_segment,
    sha256_file,
    write_manifest,
)
from latepool.memory import release_freed_memory
from latepool.options import RESIDUAL_BITS
from latepool.version import __version__

logger = logging.getLogger(__name__)

MIN_SAMPLE_VECTORS = 1_000_000  # a stream of unknown size sets its centroid count from this many vectors
REMOVABLE = ("seg-", "codec-", "pending-")  # prefixes of the files a manifest names


# ----- changes to a committed index ----------------------------------------------------------------
def add_documents(
    root: Path, ids: list[str], documents: list[Tensor], *, replace: bool = False, current: Snapshot | None = None
) -> Snapshot:
    """Add pooled documents to the index at ``root`` as new segments; returns the committed snapshot.

    Args:
        root: The index directory.
        ids / documents: Unique ids and non-empty ``(n_i, dim)`` tensors.
        replace: Replace documents whose id exists (else :class:`DocumentsExistError`).
        current: The caller's snapshot: reused if it is still the latest commit.
    """
    if not ids or len(set(ids)) != len(ids) or len(ids) != len(documents):
        raise IndexInputError("give one unique id per document, and at least one document")
    with writer_lock(root):
        snapshot = latest(root, current)
        dim = snapshot.manifest["dim"]
        if any(d.ndim != 2 or d.shape[1] != dim or len(d) == 0 for d in documents):
            raise IndexInputError(f"documents must be non-empty (n, {dim}) tensors")
        existing = [i for i in ids if i in snapshot.locations]
        if existing and not replace:
            raise documents_exist(existing)
        manifest = copy.deepcopy(snapshot.manifest)
        tombstone(manifest, snapshot, existing)
        segments = write_documents(root, manifest, ids, documents, snapshot.codec)
        committed = commit(root, manifest, snapshot.segments + segments, snapshot.codec)
        added = {i: (s.name, p) for s in segments for p, i in enumerate(s.ids)}
        inherit_locations(snapshot, committed, removed=existing, added=added)
        return committed


def delete(root: Path, ids: list[str], *, current: Snapshot | None = None) -> tuple[Snapshot, int]:
    """Delete documents by id (all or none); returns the committed snapshot and how many were deleted.

    Raises:
        DocumentsNotFoundError: An id is not in the index (nothing is deleted).
    """
    unique = list(dict.fromkeys(ids))
    with writer_lock(root):
        snapshot = latest(root, current)
        missing = [i for i in unique if i not in snapshot.locations]
        if missing:
            raise DocumentsNotFoundError(
                f"{count_of(len(missing), 'id')} not in the index (first: {missing[0]!r}); nothing was deleted"
            )
        manifest = copy.deepcopy(snapshot.manifest)
        tombstone(manifest, snapshot, unique)
        committed = commit(root, manifest, snapshot.segments, snapshot.codec)
        inherit_locations(snapshot, committed, removed=unique)
        return committed, len(unique)


def compact(root: Path, *, current: Snapshot | None = None) -> Snapshot:
    """Rewrite the segments that hold deleted documents, merged with the small ones; returns the snapshot.

    Segments without deletions that hold at least a quarter of the live documents (or of
    ``MAX_SEGMENT_DOCUMENTS``, if fewer) stay as they are. Live documents are copied as stored
    (codes, residual bytes, scales), never decoded and re-encoded, so their vectors are bit for bit
    the same; one segment at a time is held in memory.
    """
    with writer_lock(root):
        snapshot = latest(root, current)
        rewrite = segments_to_merge(snapshot)
        if not rewrite:
            return snapshot
        manifest = copy.deepcopy(snapshot.manifest)
        merged = merge_segments(root, manifest, rewrite, snapshot.codec)
        kept = [s for s in snapshot.segments if s.name not in {v.segment.name for v in rewrite}]
        return commit(root, manifest, kept + merged, snapshot.codec)


def latest(root: Path, current: Snapshot | None = None) -> Snapshot:
    """The latest committed snapshot, read from the manifest (``current`` itself if it is still the latest)."""
    return open_snapshot(root) if current is None else refreshed(root, current, trust_stamp=False)


def tombstone(manifest: dict[str, Any], snapshot: Snapshot, ids: list[str]) -> None:
    """Mark the documents ``ids`` (live in ``snapshot``) deleted in ``manifest`` (sets: linear in the ids)."""
    positions: dict[str, set[int]] = defaultdict(set)
    for doc_id in ids:
        segment, position = snapshot.locations[doc_id]
        positions[segment].add(position)
    for segment, new in positions.items():
        manifest["deleted"][segment] = sorted(new.union(manifest["deleted"].get(segment, [])))


def inherit_locations(
    before: Snapshot, after: Snapshot, removed: list[str], added: dict[str, tuple[str, int]] | None = None
) -> None:
    """Give ``after`` the id locations of ``before`` less ``removed`` plus ``added``, if ``before`` had them.

    Saves the next change from mapping every id of the index again (a copy of the map, not a scan).
    """
    if "locations" not in before.__dict__:
        return
    locations = dict(before.locations)
    for doc_id in removed:
        del locations[doc_id]
    locations.update(added or {})
    after.__dict__["locations"] = locations


def segments_to_merge(snapshot: Snapshot) -> list:
    """The views compaction rewrites: segments with deletions, and small ones (none if only one small, whole one)."""
    small = min(max(snapshot.live_counts()[0], 1), MAX_SEGMENT_DOCUMENTS) / 4
    rewrite = [v for v in snapshot.views if not v.live.all() or v.segment.count < small]
    if not rewrite or (len(rewrite) == 1 and rewrite[0].live.all()):
        return []
    return rewrite


def merge_segments(root: Path, manifest: dict[str, Any], views: list, codec: Codec | None) -> list[Segment]:
    """Copy the live documents of ``views`` into new segments (bit for bit); update ``manifest``.

    Each old segment is mapped anew and released after its documents are copied, so the memory
    held is one new segment's arrays and the pages of one old segment.
    """
    forget(manifest, {view.segment.name for view in views})
    buffer, written = SegmentBuffer(manifest["dtype"], codec), []
    for view in views:
        segment = read_segment(root, view.segment.name, manifest["dtype"], manifest["dim"])
        positions = np.flatnonzero(view.live)
        while len(positions):
            room = MAX_SEGMENT_DOCUMENTS - len(buffer)
            take, positions = positions[:room], positions[room:]
            lengths, arrays = segment.stored(take)
            buffer.add_stored([segment.ids[int(p)] for p in take], lengths, arrays)
            if len(buffer) == MAX_SEGMENT_DOCUMENTS:
                written.append(write_buffer(root, manifest, buffer))
        del segment
    if len(buffer):
        written.append(write_buffer(root, manifest, buffer))
    return written


def forget(manifest: dict[str, Any], names: set[str]) -> None:
    """Take the segments or chunks ``names`` out of ``manifest``: its segment list, deletions and checksums."""
    manifest["segments"] = [n for n in manifest["segments"] if n not in names]
    manifest["deleted"] = {n: p for n, p in manifest["deleted"].items() if n not in names}
    manifest["checksums"] = {k: v for k, v in manifest["checksums"].items() if k.split("/")[0] not in names}


def write_documents(
    root: Path, manifest: dict[str, Any], ids: list[str], documents: list[Tensor], codec: Codec | None
) -> list[Segment]:
    """Write documents as new segments of at most ``MAX_SEGMENT_DOCUMENTS``; add them to ``manifest``."""
    written = []
    for start in range(0, len(ids), MAX_SEGMENT_DOCUMENTS):
        chunk = slice(start, start + MAX_SEGMENT_DOCUMENTS)
        buffer = SegmentBuffer(manifest["dtype"], codec)
        buffer.add_documents(ids[chunk], documents[chunk])
        written.append(write_buffer(root, manifest, buffer))
    return written


def write_buffer(root: Path, manifest: dict[str, Any], buffer: SegmentBuffer) -> Segment:
    """Write ``buffer`` as a new segment, name it in ``manifest`` (not yet committed), and map it."""
    name = f"seg-{uuid.uuid4().hex[:12]}"
    manifest["checksums"].update(buffer.write(root / name))
    manifest["segments"].append(name)
    return read_segment(root, name, manifest["dtype"], manifest["dim"])


def commit(
    root: Path, manifest: dict[str, Any], segments: list[Segment], codec: Codec | None, name: str = MANIFEST
) -> Snapshot:
    """Commit ``manifest`` (its counts updated) as ``name``, remove what no manifest names; returns its snapshot."""
    snapshot = Snapshot.assemble(manifest, segments, codec)
    manifest["document_count"], manifest["vector_count"] = snapshot.live_counts()
    write_manifest(root, manifest, name)
    snapshot.stamp = manifest_stamp(root, name)
    remove_unreferenced(root)
    return snapshot


def remove_unreferenced(root: Path) -> None:
    """Remove segment, codec and pending files that neither ``manifest.json`` nor ``partial.json`` names.

    Run under the writer lock, and only while no reader is opening the index; never raises (a file
    left behind is removed by a later commit).
    """
    try:
        with no_readers_opening(root) as free:
            if not free:
                return
            keep: set[str] = set()
            for name in (MANIFEST, PARTIAL):
                if (root / name).is_file():
                    manifest = json.loads((root / name).read_text(encoding="utf-8"))
                    pending = manifest.get("build", {}).get("pending", [])
                    keep |= {*manifest["segments"], manifest.get("codec"), *pending}
            for entry in root.iterdir():
                stale = entry.name.startswith(REMOVABLE) and entry.name not in keep
                if stale or entry.name.endswith((".tmp", ".tmp.npz")):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    except (OSError, ValueError, KeyError) as error:
        logger.warning("could not remove unreferenced files in %s (a later commit will): %s", root, error)


# ----- streaming, resumable builds ---------------------------------------------------------------------
class IndexBuilder:
    """A new index written from a stream of pooled documents, committed as it goes, resumable after a kill.

    Use :meth:`start` (it takes the writer lock, and resumes a partial build of the same settings
    and source), :meth:`add` for each batch, :meth:`finish` at the end; close it (or use ``with``)
    to release the lock. See the module docstring for an example.
    """

    def __init__(self, root: Path, request: dict[str, Any], lock: contextlib.ExitStack, created: bool) -> None:
        self.root = root
        self.request = request  # what identifies the build: settings, source, codec options
        self._lock = lock
        self._created = created  # the directory was made by this build (removed if it commits nothing)
        self._committed = False
        self._manifest: dict[str, Any] = {}
        self._segments: list[Segment] = []
        self._codec: Codec | None = None
        self._buffer: SegmentBuffer | None = None
        self._seen: set[str] = set()
        self._pending_vectors = 0
        self._pending_documents = 0

    # ----- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        path: str | Path,
        settings: dict[str, Any],
        *,
        source: str = "",
        centroids: bool = True,
        expected_documents: int | None = None,
        num_centroids: int | None = None,
        seed: int = 0,
        commit_every: int = MAX_SEGMENT_DOCUMENTS,
        overwrite: bool = False,
    ) -> IndexBuilder:
        """Start (or resume) a build at ``path``.

        Args:
            path: The index directory. An index already there is replaced only with ``overwrite``,
                and stays readable until :meth:`finish` commits the new one.
            settings: What the manifest records: ``pool_method``, ``pool_factor``, ``dtype`` and the
                model's ``model``, ``model_hash``, ``query_length``, ``document_length``.
            source: Identifies the documents (e.g. a hash of ids and texts); a partial build is
                resumed only by a build of the same source and settings.
            centroids: Train centroids and inverted lists (residual dtypes always have them).
            expected_documents: The stream's size, if known: sets the centroid count.
            num_centroids: The centroid count (default: :func:`default_num_centroids` of the
                expected vectors, else of the sample's).
            seed: Seed of the codec's sample and training.
            commit_every: Commit after this many documents are buffered (at most one segment).
            overwrite: Discard a partial build and replace an existing index.

        Raises:
            IndexBusyError: Another writer is using ``path``.
            ValueError: ``path`` holds an index (without ``overwrite``), a partial build of other
                documents or settings, or is not a directory.
        """
        root = Path(path)
        if settings.get("dtype") not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {settings.get('dtype')!r}")
        if root.exists() and not root.is_dir():
            raise ValueError(f"{root} exists and is not a directory")
        created = not root.exists()
        request = {
            "settings": dict(settings),
            "source": source,
            "centroids": bool(centroids or settings["dtype"] in RESIDUAL_BITS),
            "expected_documents": expected_documents,
            "num_centroids": num_centroids,
            "seed": seed,
            "commit_every": max(1, min(int(commit_every), MAX_SEGMENT_DOCUMENTS)),
        }
        lock = contextlib.ExitStack()
        lock.enter_context(writer_lock(root, wait=False))
        try:
            builder = cls(root, request, lock, created)
            builder._resume_or_begin(overwrite)
        except BaseException:
            lock.close()
            raise
        return builder

    def _resume_or_begin(self, overwrite: bool) -> None:
        partial = self.root / PARTIAL
        if partial.is_file() and not overwrite:
            manifest = read_manifest(self.root, PARTIAL)
            if manifest["build"]["request"] != _jsonable(self.request):
                raise ValueError(
                    f"{self.root} holds a partial build of other documents or settings: rerun that build with its "
                    "own arguments to finish it, or start this one with --overwrite (overwrite=True)"
                )
            self._load_partial(manifest)
            return
        if (self.root / MANIFEST).is_file() and not overwrite:
            raise ValueError(f"{self.root} already holds an index; pass --overwrite (overwrite=True) to replace it")
        if partial.is_file():
            partial.unlink()
            remove_unreferenced(self.root)

    def _load_partial(self, manifest: dict[str, Any]) -> None:
        snapshot = load_snapshot(self.root, manifest)
        self._manifest, self._segments, self._codec = manifest, snapshot.segments, snapshot.codec
        self._seen = {i for segment in self._segments for i in segment.ids}
        for name in manifest["build"]["pending"]:
            ids, lengths, _ = _read_pending(self.root / name, with_vectors=False)
            self._seen.update(ids)
            self._pending_vectors += sum(lengths)
            self._pending_documents += len(ids)
        if self._codec is not None or not self.request["centroids"]:
            self._buffer = SegmentBuffer(manifest["dtype"], self._codec)

    def has(self, doc_id: str) -> bool:
        """Whether the build already holds the document ``doc_id`` (committed, pending or buffered)."""
        return doc_id in self._seen

    @property
    def done(self) -> int:
        """Documents committed so far: a resumed build's stream skips this many first documents."""
        return int(self._manifest.get("build", {}).get("documents", 0))

    def close(self) -> None:
        """Release the writer lock. A build that committed nothing leaves no directory it created."""
        try:
            if not self._committed and self._created and not (self.root / PARTIAL).is_file():
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            self._lock.close()

    def __enter__(self) -> IndexBuilder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- adding documents -------------------------------------------------------------------------
    def add(self, ids: list[str], documents: list[Tensor]) -> None:
        """Add a batch of pooled documents (ids new to the build, tensors non-empty ``(n_i, dim)``).

        Before the codec exists the batch is kept as a pending chunk (committed); the batch that
        completes the codec's sample trains it. After that, documents are encoded into the open
        segment, which is written and committed every ``commit_every`` documents.
        """
        if not len(ids) and not len(documents):
            return
        self._check(ids, documents)
        self._seen.update(ids)
        if self._buffer is None:
            self._pending_vectors += sum(len(d) for d in documents)
            if self._pending_vectors < self._sample_target():
                self._add_pending(ids, documents)
                return
            self._train_codec(ids, documents)
            return
        self._buffer_documents(ids, documents)
        if len(self._buffer) >= self.request["commit_every"]:
            self._write_open_segment()
            self._commit()

    def finish(self) -> Snapshot:
        """Train the codec if the stream ended before its sample filled, write what is buffered, merge
        small segments, and commit the index (``manifest.json``); returns its snapshot."""
        if not self._seen:
            raise IndexInputError("no documents given: an index needs at least one document")
        if self._buffer is None:
            self._train_codec([], [])
        if len(self._buffer):
            self._write_open_segment()
        manifest = self._manifest
        rewrite = segments_to_merge(Snapshot.assemble(manifest, self._segments, self._codec))
        if rewrite:
            merged = merge_segments(self.root, manifest, rewrite, self._codec)
            self._segments = [s for s in self._segments if s.name in manifest["segments"]] + merged
        final = {key: value for key, value in manifest.items() if key != "build"}
        snapshot = commit(self.root, final, self._segments, self._codec)
        self._committed = True
        (self.root / PARTIAL).unlink(missing_ok=True)
        fsync_directory(self.root)
        remove_unreferenced(self.root)
        return snapshot

    def _check(self, ids: list[str], documents: list[Tensor]) -> None:
        if len(ids) != len(documents):
            raise IndexInputError(f"{count_of(len(ids), 'id')} for {count_of(len(documents), 'document')}")
        if len(set(ids)) != len(ids) or any(i in self._seen for i in ids):
            repeated = next(i for n, i in enumerate(ids) if i in self._seen or i in ids[:n])
            raise IndexInputError(f"document ids must be unique (repeated: {repeated!r})")
        dim = self._manifest.get("dim") or (int(documents[0].shape[-1]) if documents else 0)
        if any(d.ndim != 2 or len(d) == 0 or d.shape[1] != dim for d in documents):
            raise IndexInputError(f"documents must be non-empty (n, {dim}) tensors of one dimension")
        if documents and not self._manifest:
            self._begin_manifest(dim)

    def _begin_manifest(self, dim: int) -> None:
        self._manifest = {
            "format_version": FORMAT_VERSION,
            "latepool_version": __version__,
            **self.request["settings"],
            "dim": dim,
            "segments": [],
            "deleted": {},
            "checksums": {},
            "codec": None,
            "build": {"request": _jsonable(self.request), "documents": 0, "pending": []},
        }
        if not self.request["centroids"]:
            self._buffer = SegmentBuffer(self._manifest["dtype"], None)

    def _sample_target(self) -> int:
        """Vectors to collect before the codec is trained.

        The centroids train on ``POINTS_PER_CENTROID`` vectors each. When the centroid count is
        known (given, or estimated from ``expected_documents``) that is all the build waits for;
        a stream of unknown size first collects ``MIN_SAMPLE_VECTORS`` to estimate the count.
        """
        sample = POINTS_PER_CENTROID * self._centroid_count()
        known = self.request["num_centroids"] or self.request["expected_documents"]
        return sample if known else max(MIN_SAMPLE_VECTORS, sample)

    def _centroid_count(self) -> int:
        if self.request["num_centroids"]:
            return int(self.request["num_centroids"])
        expected, seen = self.request["expected_documents"], max(len(self._seen), 1)
        vectors = self._pending_vectors * (expected / seen if expected and expected > seen else 1)
        return default_num_centroids(int(vectors))

    def _add_pending(self, ids: list[str], documents: list[Tensor]) -> None:
        name = f"pending-{uuid.uuid4().hex[:12]}"
        self._manifest["checksums"].update(_write_pending(self.root / name, ids, documents))
        self._manifest["build"]["pending"].append(name)
        self._pending_documents += len(ids)
        self._commit()

    def _train_codec(self, ids: list[str], documents: list[Tensor]) -> None:
        """Train the codec on a sample of the pending documents and this batch, then write them all as segments.

        Memory holds the sample and one pending chunk at a time, never every pending document.
        """
        pending = [self.root / name for name in self._manifest["build"]["pending"]]
        lengths = [n for chunk in pending for n in _read_pending(chunk, with_vectors=False)[1]]
        lengths += [len(d) for d in documents]
        count, seed = self._centroid_count(), self.request["seed"]
        limit = POINTS_PER_CENTROID * count  # what the centroids train on: gathered, never copied
        chosen = sample_plan(lengths, seed, limit=limit)
        sample = _gather_sample(chosen, lengths, pending, documents, self._manifest["dim"])[:limit]
        bits = RESIDUAL_BITS.get(self._manifest["dtype"], 0)
        self._codec = Codec.train(sample, count, bits=bits, seed=seed, consume=True)
        del sample
        release_freed_memory()  # the sample and k-means' temporaries
        name = f"codec-{uuid.uuid4().hex[:12]}.npz"
        self._codec.save(self.root / name)
        fsync_file(self.root / name)
        self._manifest["codec"] = name
        self._manifest["checksums"][name] = sha256_file(self.root / name)
        self._buffer = SegmentBuffer(self._manifest["dtype"], self._codec)
        for chunk in pending:
            chunk_ids, _, chunk_documents = _read_pending(chunk)
            self._buffer_documents(chunk_ids, chunk_documents)
        self._buffer_documents(list(ids), list(documents))
        if len(self._buffer):
            self._write_open_segment()
        forget(self._manifest, {chunk.name for chunk in pending})
        self._manifest["build"]["pending"] = []
        self._pending_documents = 0
        self._commit()

    def _buffer_documents(self, ids: list[str], documents: list[Tensor]) -> None:
        """Encode documents into the open segment, writing it (uncommitted) each time it is full."""
        start = 0
        while start < len(ids):
            stop = start + MAX_SEGMENT_DOCUMENTS - len(self._buffer)
            self._buffer.add_documents(list(ids[start:stop]), list(documents[start:stop]))
            start = stop
            if len(self._buffer) >= MAX_SEGMENT_DOCUMENTS:
                self._write_open_segment()

    def _write_open_segment(self) -> None:
        self._segments.append(write_buffer(self.root, self._manifest, self._buffer))

    def _commit(self) -> None:
        committed = sum(segment.count for segment in self._segments) + self._pending_documents
        self._manifest["build"]["documents"] = committed
        commit(self.root, self._manifest, self._segments, self._codec, name=PARTIAL)
        self._committed = True


def build_from_batches(
    path: str | Path,
    batches: Iterable[tuple[list[str], list[Tensor]]],
    settings: dict[str, Any],
    *,
    progress: Any = None,
    **options: Any,
) -> Snapshot:
    """Build an index from ``(ids, documents)`` batches with :class:`IndexBuilder`, resuming a partial build.

    The first :attr:`IndexBuilder.done` documents of ``batches`` are skipped (they were committed
    by an earlier, interrupted run), after checking that their ids are the ones committed.

    Args:
        path: The index directory.
        batches: The stream of pooled documents.
        settings: See :meth:`IndexBuilder.start`.
        progress: A tqdm-like bar to ``update`` with each batch's document count (optional).
        **options: Passed to :meth:`IndexBuilder.start`.
    """
    with IndexBuilder.start(path, settings, **options) as builder:
        skip = builder.done
        if progress is not None:
            progress.update(skip)
        for ids, documents in batches:
            if skip:
                skipped, ids, documents = ids[:skip], ids[skip:], documents[skip:]
                if not all(builder.has(i) for i in skipped):
                    raise ValueError(f"{path}: the stream's first documents are not those of the partial build")
                skip -= len(skipped)
            if len(ids):
                builder.add(list(ids), list(documents))
                if progress is not None:
                    progress.update(len(ids))
        return builder.finish()


def sample_plan(lengths: list[int], seed: int, limit: int = MIN_SAMPLE_VECTORS) -> list[int]:
    """Which documents train the codec, in sample order: whole documents drawn under ``seed`` until ``limit`` vectors.

    Example::

        >>> sample_plan([5, 5, 5, 5], seed=0, limit=10)
        [0, 1]
    """
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen, rows = [], 0
    for i in order:
        if rows >= limit:
            break
        chosen.append(i)
        rows += lengths[i]
    return chosen


def _gather_sample(
    chosen: list[int], lengths: list[int], pending: list[Path], documents: list[Tensor], dim: int
) -> Tensor:
    """The vectors of the ``chosen`` documents (numbered across the pending chunks, then ``documents``),
    concatenated in ``chosen`` order; each pending chunk is read once and released."""
    sizes = torch.tensor([lengths[i] for i in chosen], dtype=torch.long)
    destination = dict(zip(chosen, (torch.cumsum(sizes, 0) - sizes).tolist()))
    sample = torch.empty(int(sizes.sum()), dim)
    first = 0
    for source in [*pending, None]:
        vectors = documents if source is None else _read_pending(source)[2]
        for number, vector in enumerate(vectors, start=first):
            if number in destination:
                sample[destination[number] : destination[number] + len(vector)] = vector
        first += len(vectors)
        del vectors
    return sample


def _write_pending(directory: Path, ids: list[str], documents: list[Tensor]) -> dict[str, str]:
    """Keep documents exactly (float32) until the codec exists; returns the files' SHA-256s."""
    directory.mkdir()
    vectors = torch.cat([d.detach().float().cpu() for d in documents]).numpy()
    np.save(directory / "vectors.npy", vectors)
    np.save(directory / "lengths.npy", np.array([len(d) for d in documents], dtype=np.int64))
    (directory / "ids.json").write_text(json.dumps(list(ids)), encoding="utf-8")
    for path in directory.iterdir():
        fsync_file(path)
    fsync_directory(directory)
    return {f"{directory.name}/{f.name}": sha256_file(f) for f in sorted(directory.iterdir())}


def _read_pending(directory: Path, with_vectors: bool = True) -> tuple[list[str], list[int], list[Tensor]]:
    try:
        ids = json.loads((directory / "ids.json").read_text(encoding="utf-8"))
        lengths = np.load(directory / "lengths.npy").tolist()
        if not with_vectors:
            return ids, lengths, []
        vectors = torch.from_numpy(np.load(directory / "vectors.npy"))
    except (OSError, ValueError) as error:
        raise IndexFormatError(f"{directory}: unreadable pending documents ({error})") from error
    return ids, lengths, list(vectors.split(lengths))


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (so a stored request compares equal to a new one)."""
    return json.loads(json.dumps(value, sort_keys=True))
