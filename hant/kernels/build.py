"""Build and load the C++ kernels with ``torch.utils.cpp_extension`` into a cache directory.

Why at first use and not at ``pip install``: the extension must be compiled against the torch
that will import it, and pip's isolated build environment would install a second torch to build
with. ``load`` compiles once per source hash and torch version into ``kernel_dir()`` (reused after
that) with the gcc on the machine; ``python -m hant.kernels`` builds ahead of time, as CI does.
"""
from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from ..errors import HantError

log = logging.getLogger(__name__)

SOURCES = (Path(__file__).with_name("masked_conv.cpp"),)
BUILD_HINT = "run `python -m hant.kernels` (it needs gcc and ninja) and see its error"


class KernelNotBuilt(HantError):
    """The compiled masked-convolution kernel is not available on this machine."""


def kernel_dir() -> Path:
    """Where compiled kernels live: ``$HANT_KERNEL_DIR`` or ``~/.cache/hant/kernels/<torch version>``."""
    root = os.environ.get("HANT_KERNEL_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "hant" / "kernels"
    return base / f"torch-{torch.__version__.replace('+', '_')}"


def _name() -> str:
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()[:12]
    return f"hant_kernels_{digest}"


@lru_cache(maxsize=1)
def build_kernels() -> Path:
    """Compile (or reuse) the kernels and register ``torch.ops.hant``; returns the library's path."""
    from torch.utils import cpp_extension

    directory = kernel_dir() / _name()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        cpp_extension.load(
            name=_name(),
            sources=[str(p) for p in SOURCES],
            build_directory=str(directory),
            extra_cflags=["-O3", "-march=native"],
            is_python_module=False,
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KernelNotBuilt(f"the masked-convolution kernel is not built ({first}); {BUILD_HINT}") from e
    log.info("masked-convolution kernel loaded from %s", directory)
    return directory


def masked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kept_idx: torch.Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int] = (1, 1),
) -> torch.Tensor:
    """The convolution of ``x`` at the flat output pixels ``kept_idx`` only; every other output
    pixel is the bias (what the convolution gives a zero input). groups=1, CPU, float32/64."""
    build_kernels()
    return torch.ops.hant.masked_conv2d(x, weight, bias, kept_idx, list(stride), list(padding), list(dilation))
