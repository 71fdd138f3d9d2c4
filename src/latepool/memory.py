"""Handing freed memory back to the operating system.

glibc keeps the memory of freed small and medium allocations in its heap for reuse. A long build
frees the tensors of every chunk it encodes, and the heap they leave behind grows with the number
of chunks (fragmentation), so the process's resident memory would grow with the corpus although
no chunk is kept. :func:`release_freed_memory` asks glibc to return what is free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library, or no C library found)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return the heap's free memory to the operating system (glibc); True if it could be asked.

    Example::

        >>> release_freed_memory()  # on Linux with glibc
        True
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
