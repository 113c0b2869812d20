"""What the CPU can run fast: the instruction-set features that decide int8 and bf16 speed."""
from __future__ import annotations

import functools
from pathlib import Path

FEATURES = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
)
"""The flags recorded in a device fingerprint (int8 dot products: VNNI, AMX-INT8; bf16: AVX512-BF16, AMX-BF16)."""


@functools.lru_cache(maxsize=1)
def cpu_features() -> tuple[str, ...]:
    """The :data:`FEATURES` this CPU has, from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(f for f in FEATURES if f in flags)
    return ()


def native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features()))
