"""Give freed heap memory back to the operating system after big transient work.

glibc's malloc keeps freed memory for reuse instead of returning it, so the temporary
arrays of loading a snapshot or of a recall measurement (tens of MB of vectors and
distances) would stay in the server's resident size for good: 3% of a 100k index, measured.
malloc_trim hands it back. Elsewhere than glibc this does nothing; nor does tune_malloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# glibc's mallopt parameters (malloc.h).
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3
ARENAS = 2
MMAP_THRESHOLD = 1 << 20


def tune_malloc() -> list[str]:
    """Keep a server under churn close to the memory its rows need (glibc only); which
    settings applied. Called once at start-up, before threads exist; the environment's
    MALLOC_ARENA_MAX or MALLOC_MMAP_THRESHOLD_ wins over each.

    - Threads share ARENAS heaps instead of glibc's eight per core: each of the many
      threads (gRPC's pool, Voyager's, the embed queue) otherwise kept what it freed in a
      heap of its own. A soak (8 clients, 50k live rows) held 243 MB in its middle third
      against 310 MB with MALLOC_ARENA_MAX=16.
    - Blocks of MMAP_THRESHOLD or more are mapped and unmapped, never kept in a heap. By
      default the threshold rises to each large block freed (up to 32 MB), after which the
      scans' and batches' buffers of a few MB come from the heaps and stay there; fixed,
      the same soak's last third averaged 231 MB against 263 MB.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return []
    applied = []
    for name, parameter, value in (
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENAS),
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ):
        if name not in os.environ and libc.mallopt(parameter, value):
            applied.append(f"{name}={value}")
    return applied


def process_rss_bytes() -> int:
    """This process's resident memory (Linux: /proc/self/statm); 0 where unknown."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
