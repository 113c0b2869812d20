"""The CPU allocator policy under which torch latencies are measured.

glibc returns a freed block of more than its (adaptive) mmap threshold to the kernel and faults it
back in, page by page, on the next allocation. A convolution block at 112x112 then spends half its
time in page faults when timed alone, and a different share inside a network, because the
threshold depends on every allocation made before: block latencies stop adding up, more so at
larger batches. Measurements therefore run with glibc told to keep freed memory (no trimming, and
blocks under 1 GiB from the heap rather than from mmap, where glibc allows it; else its 32 MiB
maximum), as a deployment with jemalloc, tcmalloc or these settings runs; the policy is part of the
device fingerprint.

The policy holds only inside :func:`keep_freed_memory`. glibc can neither report its thresholds nor
turn its adaptive rule back on once they are set, so on leaving, the thresholds are set to where that
rule settles in a process that frees large tensors (its maxima: mmap above 32 MiB, trim above twice
that) and the kept memory is handed back to the kernel.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import platform
from typing import Iterator

log = logging.getLogger(__name__)

KEEP_FREED = "glibc-keep-freed"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""mallopt's parameter numbers (malloc.h)."""
KEEP_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
"""Wanted while measuring; then the limit older glibc versions accept on 64-bit systems."""
KEEP_TRIM_THRESHOLD = 2**31 - 1
SETTLED_MMAP_THRESHOLD = 32 << 20
"""Where glibc's adaptive mmap threshold settles on a 64-bit system (its maximum)."""
SETTLED_TRIM_THRESHOLD = 2 * SETTLED_MMAP_THRESHOLD
"""The trim threshold the adaptive rule pairs with it."""


def allocator_policy() -> str:
    """``glibc-keep-freed`` where glibc can be told to keep freed memory, else ``system``."""
    return KEEP_FREED if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" else "system"


_open_blocks = 0
"""How many :func:`keep_freed_memory` blocks are open (nested ones leave the policy to the outermost)."""


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    """Apply :func:`allocator_policy` for the block; on leaving the outermost block, hand the policy
    back (see the module notes for what glibc allows)."""
    if allocator_policy() != KEEP_FREED:
        yield
        return
    global _open_blocks
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if _open_blocks == 0:
        mmap_ok = any(libc.mallopt(M_MMAP_THRESHOLD, t) for t in KEEP_MMAP_THRESHOLDS)
        if not (mmap_ok and libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)):
            log.warning("glibc refused the allocator settings for latency measurement; latencies may not add up")
    _open_blocks += 1
    try:
        yield
    finally:
        _open_blocks -= 1
        if _open_blocks == 0:
            libc.mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)
            libc.malloc_trim(0)
