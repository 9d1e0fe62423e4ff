"""Keeping freed CPU memory for the next forward: a process-wide setting of glibc's malloc, for
applications that run many CPU forwards (feature extraction, serving, benchmarks).

PyTorch allocates CPU tensors with the C library's malloc. glibc hands memory that tensors
free at the top of its heap back to the kernel once more than a threshold is free there (and
serves allocations above another threshold by ``mmap``, returned on free), so the next forward
takes the same memory again as fresh pages: one page fault per 4 KiB, each zeroed by the
kernel. Kept, a CPU forward takes its memory again without faults, noticeably faster
(BENCHMARKS.md, page faults).

The cost is memory: the process keeps what it freed (up to its peak) instead of returning it.
A library should not change its host process's allocator unasked, so nothing here runs on
import: applications call :func:`keep_freed_memory` (``tools/extract_features.py`` and
``tools/benchmark.py --keep-freed-memory`` do), or set glibc's ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` environment variables, which do the same, before Python starts.
"""
from __future__ import annotations

import ctypes
import sys

__all__ = ['keep_freed_memory']

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Have glibc's malloc keep up to ``limit`` bytes freed at the top of its heap, and serve
    allocations up to ``limit`` from the heap rather than by ``mmap``, for the rest of the
    process. Returns whether the setting was applied: False where the C library is not glibc
    (no ``mallopt``) or refuses the values. (Older glibc releases cap the ``mmap`` threshold
    at 32 MiB: that cap is then used.)"""
    if not isinstance(limit, int) or not 0 < limit < 1 << 31:
        raise ValueError(f'limit must be an int of bytes in (0, 2**31), not {limit!r}')
    if not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl, or no C library symbols in this process
        return False
    mmap_ok = mallopt(_M_MMAP_THRESHOLD, limit) or mallopt(_M_MMAP_THRESHOLD, min(limit, 32 << 20))
    return bool(mmap_ok) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
