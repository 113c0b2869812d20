"""The CPU allocator policy under which torch latencies are measured.

glibc returns a freed block of more than its (adaptive) mmap threshold to the kernel and faults it
back in, page by page, on the next allocation. A convolution block at 112x112 then spends half its
time in page faults when timed alone, and a different share inside a network, because the
threshold depends on every allocation made before: block latencies stop adding up, more so at
larger batches. Measurements therefore run with glibc told to keep freed memory (no trimming, and
blocks under 1 GiB from the heap rather than from mmap, where glibc allows it; else its 32 MiB
maximum), as a deployment with jemalloc, tcmalloc or these settings runs; the policy is part of the
device fingerprint. It lasts for the life of the measuring process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

KEEP_FREED = "glibc-keep-freed"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)  # wanted; the limit older glibc versions accept on 64-bit systems
_applied = False


def allocator_policy() -> str:
    """``glibc-keep-freed`` where glibc can be told to keep freed memory, else ``system``."""
    return KEEP_FREED if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" else "system"


def keep_freed_memory() -> None:
    """Apply :func:`allocator_policy` to this process (once; it lasts for the process's life)."""
    global _applied
    if _applied or allocator_policy() != KEEP_FREED:
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mmap_ok = any(libc.mallopt(_M_MMAP_THRESHOLD, t) for t in _MMAP_THRESHOLDS)
    if not (mmap_ok and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)):
        log.warning("glibc refused the allocator settings for latency measurement; latencies may not add up")
    _applied = True
