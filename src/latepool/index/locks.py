"""Who may touch an index directory when: one writer at a time across processes, readers never blocked.

Two lock files in the index directory, taken with ``flock`` (released by the kernel when the
process dies, so a killed writer never leaves a stale lock):

- ``.writer.lock``: held exclusively by a writer for its whole read-modify-commit (an add, a delete,
  a compaction, a build). Readers never take it.
- ``.readers.lock``: held shared by a reader only while it reads the manifest and maps the files it
  names. A writer removes files that no manifest names only while it can hold this lock
  exclusively, so no reader is between reading a manifest and mapping its files; a reader that has
  mapped a file keeps reading it after it is removed (the data lives until it is unmapped).

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> with writer_lock(root):
    ...     with writer_lock(root, wait=False):
    ...         pass
    Traceback (most recent call last):
    ...
    latepool.index.locks.IndexBusyError: ... is being changed by another writer
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

WRITER_LOCK = ".writer.lock"
READERS_LOCK = ".readers.lock"


class IndexBusyError(ValueError):
    """Another writer holds the index's writer lock (raised only when not waiting for it)."""


@contextlib.contextmanager
def writer_lock(root: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold the index's writer lock for the ``with`` block.

    Args:
        root: The index directory (created if missing).
        wait: Wait for another writer to finish; False raises :class:`IndexBusyError` at once.
    """
    root.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(root / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as error:
            raise IndexBusyError(f"{root} is being changed by another writer") from error
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


@contextlib.contextmanager
def reading(root: Path) -> Iterator[None]:
    """Hold the readers' lock, shared, while a reader reads the manifest and maps its files.

    An index on a read-only file system without the lock file is read without it (no writer can
    change it there either).
    """
    try:
        descriptor = os.open(root / READERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            descriptor = os.open(root / READERS_LOCK, os.O_RDONLY)
        except OSError:
            yield
            return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        yield
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def no_readers_opening(root: Path) -> Iterator[bool]:
    """Yield True while no reader is opening the index (holding the readers' lock exclusively), else False.

    Never waits: a writer skips its cleanup when a reader is opening, and a later commit does it.
    """
    descriptor = os.open(root / READERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)
