"""Checks that a latency target can run here: its device, dtype, backend runtime and providers."""
from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import torch

from ..errors import LatencyError
from .target import BACKENDS, LatencyTarget

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def import_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or a LatencyError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise LatencyError(
            "the onnxruntime latency backend needs the onnxruntime package; install it with "
            "`pip install onnxruntime` (or onnxruntime-gpu for CUDA) or choose backend 'torch'"
        ) from None
    return onnxruntime


def cuda_index(device: str) -> int:
    """Device index of ``cuda`` / ``cuda:N``."""
    _, _, idx = device.partition(":")
    try:
        return int(idx) if idx else 0
    except ValueError:
        raise LatencyError(f"cannot read the GPU index of device {device!r}; write it as 'cuda:N'") from None


def torch_device(target: LatencyTarget) -> torch.device:
    """The torch device of a target, after checking that it exists here."""
    if target.device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LatencyError(
            f"device {target.device} was asked for but PyTorch sees no CUDA GPU here; "
            "choose device 'cpu' or install a CUDA build of PyTorch"
        )
    idx = cuda_index(target.device)
    count = torch.cuda.device_count()
    if idx >= count:
        raise LatencyError(f"device {target.device} does not exist; this machine has {count} GPU(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", idx)


def check_target(target: LatencyTarget) -> None:
    """Raise LatencyError when ``target`` cannot be measured on this machine."""
    if target.backend not in BACKENDS:
        raise LatencyError(f"unknown latency backend {target.backend!r}; choose one of {list(BACKENDS)}")
    dev = torch_device(target)
    if dev.type == "cuda" and target.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise LatencyError(f"GPU {target.device} does not support bfloat16; choose dtype float16 or float32")
    if target.backend == "onnxruntime":
        if target.dtype == "bfloat16":
            raise LatencyError("the onnxruntime backend does not measure bfloat16 here; choose float16 or backend 'torch'")
        ort_providers(target)


def ort_providers(target: LatencyTarget) -> list[Any]:
    """onnxruntime execution providers for a target: CPU, or TensorRT/CUDA (with CPU fallback) on a GPU."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if target.device == "cpu":
        return ["CPUExecutionProvider"]
    idx = cuda_index(target.device)
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        opts = {"device_id": idx}
        if target.dtype == "float16":
            opts["trt_fp16_enable"] = True
        chosen.append(("TensorrtExecutionProvider", opts))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": idx}))
    if not chosen:
        raise LatencyError(
            f"onnxruntime has no CUDA or TensorRT execution provider here (it has {available}); "
            "install onnxruntime-gpu or measure on device 'cpu'"
        )
    chosen.append("CPUExecutionProvider")
    return chosen


def provider_names(providers: list[Any]) -> list[str]:
    """Names of a provider list as given to ``InferenceSession`` (strings or (name, options) pairs)."""
    return [p if isinstance(p, str) else p[0] for p in providers]
