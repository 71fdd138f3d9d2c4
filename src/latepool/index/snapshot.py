"""One committed state of an index, as readers see it: the manifest, its mapped segments and the codec.

A :class:`Snapshot` never changes after it is made; a search holds one for its whole run, so a
commit by any writer (this process or another) is seen by the next search, never half-way through
one. :func:`open_snapshot` is how a reader gets the latest committed state, and
:func:`refreshed` how it moves on to a newer one, reusing the segments both states share.

Example::

    snapshot = open_snapshot(Path("scifact.idx"))
    snapshot.live_counts()            # (documents, vectors) alive
    snapshot = refreshed(Path("scifact.idx"), snapshot)   # the same object if nothing was committed
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from latepool.index.codec import Codec
from latepool.index.locks import reading
from latepool.index.search import SegmentView
from latepool.index.storage import MANIFEST, IndexFormatError, Segment, read_manifest, read_segment, verify_checksums


@dataclass
class Snapshot:
    """One committed state of the index, never changed after it is made.

    Segments stay memory-mapped; only the manifest, ids, offsets and inverted lists are in memory.

    Attributes:
        manifest: The committed manifest.
        segments: Its segments, in manifest order.
        codec: The codec (None without centroids).
        stamp: The manifest file's identity when it was read (:func:`manifest_stamp`).
        views: Each segment with its live mask and global ordinal base.
    """

    manifest: dict[str, Any]
    segments: list[Segment]
    codec: Codec | None
    stamp: tuple[int, ...] = ()
    views: list[SegmentView] = field(default_factory=list)

    @classmethod
    def assemble(
        cls, manifest: dict[str, Any], segments: list[Segment], codec: Codec | None, stamp: tuple[int, ...] = ()
    ) -> Snapshot:
        snapshot = cls(manifest, segments, codec, stamp)
        base = 0
        for segment in segments:
            live = np.ones(segment.count, dtype=bool)
            live[np.asarray(manifest["deleted"].get(segment.name, []), dtype=np.int64)] = False
            snapshot.views.append(SegmentView(segment, live, base))
            base += segment.count
        return snapshot

    @functools.cached_property
    def ids(self) -> list[str]:
        """Live document ids, in segment order (built once per snapshot; not to be modified)."""
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

    def vectors_of(self, ids: list[str]) -> list[Tensor]:
        """The decoded ``(n_i, dim)`` float32 vectors of live documents (``KeyError`` for an id that is not)."""
        segments = {view.segment.name: view.segment for view in self.views}
        found = []
        for doc_id in ids:
            name, position = self.locations[doc_id]
            offsets = segments[name].offsets
            found.append(segments[name].decode(int(offsets[position]), int(offsets[position + 1]), self.codec))
        return found

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


def manifest_stamp(root: Path, name: str = MANIFEST) -> tuple[int, ...]:
    """The manifest file's identity (inode, size, modification time): every commit changes it."""
    try:
        status = os.stat(root / name)
    except FileNotFoundError:
        return ()
    return status.st_ino, status.st_size, status.st_mtime_ns


def load_snapshot(
    root: Path, manifest: dict[str, Any], reuse: Snapshot | None = None, stamp: tuple[int, ...] = ()
) -> Snapshot:
    """The snapshot of ``manifest``: its segments mapped (those of ``reuse`` are shared, not read again)."""
    known = {segment.name: segment for segment in reuse.segments} if reuse is not None else {}
    segments = [
        known.get(name) or read_segment(root, name, manifest["dtype"], manifest["dim"]) for name in manifest["segments"]
    ]
    codec = None
    if reuse is not None and manifest.get("codec") and manifest.get("codec") == reuse.manifest.get("codec"):
        codec = reuse.codec
    elif manifest.get("codec"):
        try:
            codec = Codec.load(root / manifest["codec"])
        except FileNotFoundError as error:
            raise IndexFormatError(f"missing index file: {root / manifest['codec']}") from error
        except (OSError, ValueError, KeyError) as error:
            raise IndexFormatError(f"unreadable codec {root / manifest['codec']}: {error}") from error
    return Snapshot.assemble(manifest, segments, codec, stamp)


def open_snapshot(root: Path, *, verify: bool = False) -> Snapshot:
    """The latest committed state of the index at ``root``, its files mapped.

    Holds the readers' lock while it reads the manifest and maps the files, so no writer removes a
    file between the two (see :mod:`latepool.index.locks`).

    Args:
        root: The index directory.
        verify: Check every file's SHA-256 against the manifest (reads every byte; the default
            checks the arrays' shapes and sizes only).
    """
    if not (root / MANIFEST).is_file():
        read_manifest(root)  # raises: not an index, or a partial build
    with reading(root):
        stamp = manifest_stamp(root)
        manifest = read_manifest(root)
        if verify:
            verify_checksums(root, manifest)
        return load_snapshot(root, manifest, stamp=stamp)


def refreshed(root: Path, snapshot: Snapshot, *, trust_stamp: bool = True) -> Snapshot:
    """``snapshot`` if it is still the latest commit, else the latest (sharing the segments both name).

    With ``trust_stamp`` an unchanged :func:`manifest_stamp` means nothing was committed (one
    ``stat``); a writer passes False and always compares manifests, since a file's identity can
    repeat after quick commits and a change applied to a stale state would lose another writer's.
    """
    if trust_stamp and manifest_stamp(root) == snapshot.stamp:
        return snapshot
    with reading(root):
        stamp = manifest_stamp(root)
        manifest = read_manifest(root)
        if manifest == snapshot.manifest:  # rewritten with the same content: the same state
            snapshot.stamp = stamp
            return snapshot
        return load_snapshot(root, manifest, reuse=snapshot, stamp=stamp)
