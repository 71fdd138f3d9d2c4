"""Freed heap memory goes back to the operating system (what keeps a long build's memory flat)."""

from __future__ import annotations

import numpy as np
import pytest

from latepool.memory import release_freed_memory


def resident_mb() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 // 10**6


def test_freed_heap_memory_between_live_blocks_is_released() -> None:
    if not release_freed_memory():
        pytest.skip("glibc's malloc_trim is not available here")
    blocks = [np.ones(100_000 // 8) for _ in range(2000)]  # 200 MB of heap allocations
    survivors = blocks[::50]  # keep the heap from shrinking at its top on its own
    del blocks
    freed = resident_mb()
    release_freed_memory()
    assert resident_mb() < freed - 100
    assert len(survivors) == 40
