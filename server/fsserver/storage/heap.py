"""Give freed heap memory back to the operating system after big transient work.

glibc's malloc keeps freed memory for reuse instead of returning it, so the temporary
arrays of loading a snapshot or of a recall measurement (tens of MB of vectors and
distances) would stay in the server's resident size for good: 3% of a 100k index, measured.
malloc_trim hands it back. Elsewhere than glibc this does nothing; nor does the arena
limit below.
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


# glibc's M_ARENA_MAX (malloc.h): how many heaps threads share.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let threads share `arenas` malloc heaps instead of glibc's default of eight per core.

    Each of the server's many threads (gRPC's pool, Voyager's, the embed queue) otherwise
    gets a heap of its own, and memory freed in one is kept there for reuse, so a server
    under churn grew far past what its rows need. Called once at start-up, before threads
    exist; an explicit MALLOC_ARENA_MAX in the environment wins. Whether it applied.
    """
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def process_rss_bytes() -> int:
    """This process's resident memory (Linux: /proc/self/statm); 0 where unknown."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
