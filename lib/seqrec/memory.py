"""The C allocator's handling of large, short-lived buffers (glibc only)."""

from __future__ import annotations

import ctypes
import ctypes.util

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts: blocks up to this size come from the heap.
_LARGEST_HEAP_BLOCK = 32 << 20


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Make this process's C allocator (glibc) reuse freed memory instead of handing it back.

    A training step or a chunk of scored users allocates the same activations again and
    again, several of 10-40 MB. By default glibc maps blocks that large afresh and unmaps them
    when freed, so every step pays for fresh pages: 8,000-10,000 page faults per chunk of 256
    users at 10 k items, about a third of its time (measured in docs/benchmark-history/scoring.md). With blocks up
    to 32 MiB served from the heap and up to ``trim_threshold`` bytes of freed heap kept, the
    faults stop. The process keeps its peak memory instead of returning it, which a loop that
    allocates the same buffers reuses anyway.

    Returns whether the setting took effect (False, changing nothing, off glibc: macOS, musl).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's name on Linux: no search needed
    except OSError:
        name = ctypes.util.find_library("c")
        if not name:
            return False
        try:
            libc = ctypes.CDLL(name)
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)  # glibc only: not in macOS's libc or musl
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _LARGEST_HEAP_BLOCK)
        and mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
