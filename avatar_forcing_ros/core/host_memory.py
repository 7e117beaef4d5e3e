"""Returning freed tensor memory to the system at once (glibc), so a process's peak RSS is its
weights plus its live working memory, not plus every transient it ever freed.

glibc serves an allocation above its mmap threshold (128 KiB at start) with its own mapping,
which `free` unmaps. But each such free raises the threshold to the freed size (up to 32 MiB),
so after the first large tensor is freed, later tensors of that size come from the heap, where
freed memory stays resident (fragmented, rarely trimmed). For the neural model on a CPU that kept
about 320 MB of dead activations (the 512 px portrait and user-frame encodes, the first 50-frame
window) resident in the generator: peak RSS 1936 MB instead of 1617 MB at the official size
(`python bench/bench_load_memory.py --generate`). Fixing the threshold (`mallopt(M_MMAP_THRESHOLD)`, which also turns the dynamic
raise off) keeps large tensors in their own mappings; small ones are unaffected. The cost is a
page fault per fresh page of a large tensor, small next to the convolutions and matrix products
that fill it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3          # <malloc.h>
MMAP_THRESHOLD_BYTES = 128 * 1024   # glibc's own initial value, now kept


def release_large_allocations_promptly() -> bool:
    """Fix glibc's mmap threshold (see the module docstring); process-wide, idempotent. Returns
    False where the C library has no `mallopt` (not glibc): nothing is changed there."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; freed tensor memory may stay resident")
    return ok
