"""Memory a process has freed goes back to the system (glibc's malloc; elsewhere only the cycle collector runs).

glibc raises its mmap threshold each time a large block is freed, so later large buffers (audio
messages, per-session arrays) come from the heap, where a few live blocks keep the freed ones
around them resident: a burst of sessions leaves its peak behind. A fixed threshold keeps large
blocks mapped (each goes back on free), fewer arenas keep gRPC's threads from holding one each,
and a trim after sessions end hands back what is free at the heap's top."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import time

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Blocks this large or larger are mapped on their own.
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENAS = 2
# A trim walks the heap: at most this often.
TRIM_EVERY_S = 1.0


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()
_trimmed_at = 0.0
_scheduled: asyncio.TimerHandle | None = None


def keep_heap_small() -> bool:
    """Set the allocator up as above, once, early in a process; False where it cannot be."""
    if _LIBC is None:
        return False
    ok = _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = _LIBC.mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and ok
    return _LIBC.mallopt(M_ARENA_MAX, ARENAS) == 1 and ok


def _trim_now() -> None:
    global _trimmed_at, _scheduled
    _scheduled = None
    _trimmed_at = time.monotonic()
    gc.collect()  # what only cycles hold (a cancelled task's traceback and the audio in its frames) first
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def trim() -> None:
    """Hand freed heap memory back to the system, soon: at most once a TRIM_EVERY_S, and always once
    after the last call (many sessions ending together are trimmed after the last of them)."""
    global _scheduled
    if _scheduled is not None:
        return
    wait = max(0.0, _trimmed_at + TRIM_EVERY_S - time.monotonic())
    _scheduled = asyncio.get_running_loop().call_later(wait, _trim_now)
