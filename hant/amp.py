"""Mixed-precision training: which autocast dtype a recipe's ``amp`` setting gives on a device.

``amp`` is ``gpu`` (autocast on a GPU only: bfloat16 where the GPU has it, else float16 where the
caller can scale the loss), ``bf16`` (bfloat16 autocast on the GPU and on the CPU alike) or ``off``;
``true`` and ``false`` are read as ``gpu`` and ``off``. On a CPU without native bfloat16 (AMX-BF16 or
AVX512-BF16) torch emulates it, which trains but is rarely faster.
"""
from __future__ import annotations

import functools
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import ContextManager, Literal, get_args

import torch

from .errors import ConfigError

log = logging.getLogger(__name__)

AmpMode = Literal["gpu", "bf16", "off"]
AMP_MODES: tuple[str, ...] = get_args(AmpMode)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of x86 CPUs that compute in bfloat16 natively."""
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that decide how fast bfloat16 and int8 run on an x86 CPU."""


def amp_mode(value: bool | str) -> str:
    """``value`` as one of :data:`AMP_MODES` (``True`` → ``gpu``, ``False`` → ``off``)."""
    if value is True:
        return "gpu"
    if value is False:
        return "off"
    if value not in AMP_MODES:
        raise ConfigError(f"amp must be one of {list(AMP_MODES)} (or true/false), got {value!r}; "
                          "fix the recipe's amp key")
    return value


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Feature flags of this machine's CPU (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def isa_features() -> dict[str, bool]:
    """Which of :data:`ISA_FLAGS` this CPU has, plus torch's own dispatch level (``torch_cpu_capability``)."""
    flags = cpu_flags()
    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), **{f: f in flags for f in ISA_FLAGS}}


def native_cpu_bf16() -> bool:
    """True when the CPU has bfloat16 arithmetic (AMX-BF16 or AVX512-BF16)."""
    return any(f in cpu_flags() for f in NATIVE_BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    log.warning("training under bfloat16 autocast on a CPU without %s: torch emulates it, usually slower than float32",
                " or ".join(NATIVE_BF16_FLAGS))


def autocast_dtype(device: torch.device, amp: bool | str, *, float16: bool) -> torch.dtype | None:
    """The dtype to train under on ``device`` (None: float32). ``float16`` says whether the caller scales
    the loss, so that a GPU without bfloat16 may fall back to float16 in ``gpu`` mode."""
    mode = amp_mode(amp)
    if mode == "off":
        return None
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if mode == "bf16":
            raise ConfigError("amp is 'bf16' but this GPU has no bfloat16; set amp to 'gpu' or 'off'")
        return torch.float16 if float16 else None
    if device.type == "cpu" and mode == "bf16":
        if not native_cpu_bf16():
            _warn_emulated_bf16()
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """``torch.autocast`` on ``device`` at ``dtype``, or a no-op for float32 (``dtype`` None)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
