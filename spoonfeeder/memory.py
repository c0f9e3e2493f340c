"""The process's memory comes back after a burst: glibc's allocator, tuned at start.

Two glibc defaults keep memory a burst of large requests freed: the mmap threshold
grows with every large block freed (up to 32 MiB), so later megabyte-sized strings are
carved from the heap instead of mapped and unmapped; and each thread that allocates may
get an arena of its own (up to 8 per core), each fragmented on its own. Fixing the
threshold at 128 KiB and allowing two arenas, and trimming after a sweep of idle
sessions, kept the app within 10 % of its baseline after a bad-input sweep
(bench/memory_after_bad_input.py). Elsewhere than glibc (musl, macOS) these do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc: the allocator returns memory its own way
    return libc


_libc = _load_libc()


def tune_allocator() -> bool:
    """Set the mmap threshold and arena count; call it first, before threads start.
    Returns whether glibc took them."""
    if _libc is None:
        return False
    took_threshold = _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    took_arenas = _libc.mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    return took_threshold and took_arenas


def return_freed_memory() -> None:
    """Ask glibc to give freed heap pages of every arena back to the system."""
    if _libc is not None:
        _libc.malloc_trim(0)
