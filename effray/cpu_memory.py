"""Keep memory a CPU training step freed, so the next step reuses it (glibc only).

glibc's malloc serves every allocation above its mmap threshold (at most 32 MiB) with a
fresh mmap and unmaps it again on free. A training step on the CPU allocates its large
activations anew each step (GhostNet at 227 px, batch 64: several of ~50 MB), so every
step faults those pages in and zeroes them again: about a million minor page faults and
as much system time as user time per step, measured in docs/benchmarks.md ("Loader path").
With M_MMAP_MAX 0 malloc takes them from the heap instead, and with M_TRIM_THRESHOLD at
its maximum the freed heap stays in the process for the next step. The price is that a
process keeps its peak memory until it exits.

Process-wide and one-way; a no-op where the C library has no mallopt (musl, macOS).
Allocations of threads other than the main one come from per-thread arenas of at most
64 MiB, and larger ones there are still mmapped: the main thread (`effray train`) gains
most.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
KEEP_BYTES = 2**31 - 1  # mallopt takes an int: the largest trim threshold it accepts

_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc to serve large allocations from the heap and keep what is freed;
    True when it did (now or earlier in this process)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
    return _applied
