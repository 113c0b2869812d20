"""Compiled CPU kernels, built from their C++ sources on first use (``python -m hant.kernels``)."""

from .build import KernelNotBuilt, build_kernels, kernel_dir, masked_conv2d

__all__ = ["KernelNotBuilt", "build_kernels", "kernel_dir", "masked_conv2d"]
