"""Checks that a latency target can run here: its device, dtype, backend runtime and providers."""
from __future__ import annotations

import logging
import shutil
from types import ModuleType
from typing import Any

import torch

from ..errors import LatencyError
from .isa import native_bf16
from .target import BACKENDS, LatencyTarget

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def module_dtype(target: LatencyTarget) -> torch.dtype:
    """The torch dtype a module and its input have on their way to the target: the target's own for
    torch backends and for half precision, float32 where a runtime converts or quantizes the export
    (int8, and bfloat16 in OpenVINO, which takes it as its inference precision)."""
    if target.exports_onnx and target.dtype in ("int8", "bfloat16"):
        return torch.float32
    return TORCH_DTYPES[target.dtype]


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


def import_openvino() -> ModuleType:
    """The ``openvino`` module, or a LatencyError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise LatencyError(
            "backend openvino needs the OpenVINO runtime; `pip install openvino nncf` or choose backend onnxruntime"
        ) from None
    return openvino


def openvino_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin reports it can compute here (``FP32``, ``INT8``, ``BF16``, ...)."""
    return [str(c) for c in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def check_openvino(dtype: str) -> None:
    """Raise LatencyError when OpenVINO is missing or cannot run ``dtype`` natively on this CPU."""
    caps = openvino_capabilities()
    if dtype == "bfloat16" and ("BF16" not in caps or not native_bf16()):
        raise LatencyError(
            f"this CPU has no native bf16 (OpenVINO reports {', '.join(caps)}); OpenVINO would run bfloat16 as "
            "float32, so choose dtype float32 or int8 here"
        )
    if dtype == "int8" and "INT8" not in caps:
        raise LatencyError(f"OpenVINO reports no int8 support on this CPU ({', '.join(caps)}); choose dtype float32")


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
        raise LatencyError(f"unknown latency backend {target.backend!r}; choose one of {', '.join(BACKENDS)}")
    dev = torch_device(target)
    if dev.type == "cuda" and target.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise LatencyError(f"GPU {target.device} does not support bfloat16; choose dtype float16 or float32")
    if target.backend == "torch_compile":
        check_torch_compile()
    if target.uses_onnxruntime:
        ort_providers(target)
    if target.backend == "openvino":
        check_openvino(target.dtype)


def check_torch_compile() -> None:
    """Raise LatencyError when ``torch.compile`` cannot run here (no inductor or no C compiler)."""
    if not hasattr(torch, "compile"):
        raise LatencyError(f"backend torch_compile needs torch.compile (torch >= 2.0); this is torch {torch.__version__}")
    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang", "c++", "g++")):
        raise LatencyError(
            "backend torch_compile compiles C++ kernels on the CPU but no C compiler (cc, gcc, clang) is on PATH; "
            "install one or choose backend 'torch'"
        )


_PROVIDER_PACKAGE = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu built with TensorRT, and TensorRT itself",
}


def _require_provider(name: str, available: list[str], backend: str) -> None:
    if name not in available:
        raise LatencyError(
            f"backend {backend} needs onnxruntime's {name}, which this onnxruntime lacks (it has {', '.join(available)}); "
            f"install {_PROVIDER_PACKAGE[name]}, or choose backend 'onnxruntime' or 'torch'"
        )


def ort_providers(target: LatencyTarget) -> list[Any]:
    """onnxruntime execution providers for a target, with CPU as the fallback for unsupported nodes.

    ``onnxruntime``: CPU on ``cpu``; on a GPU TensorRT where installed, then CUDA.
    ``onnxruntime-cuda`` / ``onnxruntime-tensorrt``: exactly that provider, a LatencyError if it is missing.
    """
    ort = import_onnxruntime()
    available = list(ort.get_available_providers())
    if target.device == "cpu":
        return ["CPUExecutionProvider"]
    idx = cuda_index(target.device)
    trt_opts: dict[str, Any] = {"device_id": idx}
    if target.dtype == "float16":
        trt_opts["trt_fp16_enable"] = True
    trt = ("TensorrtExecutionProvider", trt_opts)
    cuda = ("CUDAExecutionProvider", {"device_id": idx})
    if target.backend == "onnxruntime-tensorrt":
        _require_provider(trt[0], available, target.backend)
        return [trt, "CPUExecutionProvider"]
    if target.backend == "onnxruntime-cuda":
        _require_provider(cuda[0], available, target.backend)
        return [cuda, "CPUExecutionProvider"]
    chosen = [p for p in (trt, cuda) if p[0] in available]
    if not chosen:
        raise LatencyError(
            f"onnxruntime has no CUDA or TensorRT execution provider here (it has {', '.join(available)}); "
            "install onnxruntime-gpu or measure on device 'cpu'"
        )
    return [*chosen, "CPUExecutionProvider"]


def provider_names(providers: list[Any]) -> list[str]:
    """Names of a provider list as given to ``InferenceSession`` (strings or (name, options) pairs)."""
    return [p if isinstance(p, str) else p[0] for p in providers]
