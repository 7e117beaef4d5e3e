"""Returning freed tensor memory to the system at once (glibc), so a process's peak RSS is its
weights plus its live working memory, not plus every transient it ever freed; and dropping the
pages of a memory-mapped checkpoint that were read once (`drop_resident_pages`).

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
import functools
import logging
import mmap

import torch

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3          # <malloc.h>
MMAP_THRESHOLD_BYTES = 128 * 1024   # glibc's own initial value, now kept
MADV_PAGEOUT = 21              # <sys/mman.h>, Linux >= 5.4
PAGE_BYTES = mmap.PAGESIZE


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except (OSError, TypeError):
        return None


def release_large_allocations_promptly() -> bool:
    """Fix glibc's mmap threshold (see the module docstring); process-wide, idempotent. Returns
    False where the C library has no `mallopt` (not glibc): nothing is changed there."""
    try:
        mallopt = _libc().mallopt
    except AttributeError:           # no C library, or not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; freed tensor memory may stay resident")
    return ok


def drop_resident_pages(tensor: torch.Tensor) -> bool:
    """Ask the kernel to reclaim the memory pages lying wholly inside `tensor`'s bytes
    (MADV_PAGEOUT); returns whether it accepted.

    For a tensor memory-mapped from a checkpoint that was read once (e.g. to convert it), its
    pages leave the process's RSS now instead of when the whole file is unmapped. Contents are
    never lost: file pages are read again if touched, anonymous memory without swap stays.
    Elsewhere (not Linux, CUDA tensors, kernels before 5.4) nothing happens.
    """
    if tensor.device.type != "cpu":
        return False
    start = -(-tensor.data_ptr() // PAGE_BYTES) * PAGE_BYTES
    end = (tensor.data_ptr() + tensor.numel() * tensor.element_size()) // PAGE_BYTES * PAGE_BYTES
    madvise = getattr(_libc(), "madvise", None)
    if end <= start or madvise is None:
        return False
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return madvise(start, end - start, MADV_PAGEOUT) == 0
