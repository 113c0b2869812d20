"""LatencyTarget: where and how a latency is measured; only same-target, same-fingerprint numbers compare."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

from ..errors import ConfigError

Backend = Literal["torch", "torch_compile", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "openvino"]
BACKENDS: tuple[str, ...] = get_args(Backend)
GPU_ONLY_BACKENDS = ("onnxruntime-cuda", "onnxruntime-tensorrt")
CPU_ONLY_BACKENDS = ("openvino",)
Dtype = Literal["float32", "float16", "bfloat16", "int8"]
DTYPES: tuple[str, ...] = get_args(Dtype)
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
BACKEND_DTYPES = {
    "torch": {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "float16", "bfloat16")},
    "torch_compile": {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "float16", "bfloat16")},
    "onnxruntime": {"cpu": ("float32", "int8"), "cuda": ("float32", "float16", "int8")},
    "onnxruntime-cuda": {"cuda": ("float32", "float16")},
    "onnxruntime-tensorrt": {"cuda": ("float32", "float16", "int8")},
    "openvino": {"cpu": ("float32", "bfloat16", "int8")},
}
"""The precisions each backend runs, per device kind. int8 is static post-training quantization by the
runtime's own tool (NNCF for OpenVINO, ``onnxruntime.quantization`` QDQ for ONNX Runtime), calibrated on
the task's data; torch runs no int8 here."""
Quantizer = Literal["nncf", "onnxruntime"]
QUANTIZERS: tuple[str, ...] = get_args(Quantizer)
QUANTIZER_BACKENDS = {"nncf": ("openvino",), "onnxruntime": ("openvino", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt")}
"""The backends each int8 quantizer can feed: NNCF writes OpenVINO models; ONNX Runtime's QDQ graphs run in
ONNX Runtime and in OpenVINO, which reads QDQ ONNX and compiles it to the same int8 kernels."""
MemoryFormat = Literal["contiguous", "channels_last"]
MEMORY_FORMATS: tuple[str, ...] = get_args(MemoryFormat)


@dataclass(frozen=True, repr=False)
class LatencyTarget:
    """The deployment target of a latency measurement."""

    device: str = "cpu"
    """``cpu`` or ``cuda:N``."""
    backend: Backend = "torch"
    """Runtime that executes the network: ``torch`` (eager), ``torch_compile`` (``torch.compile``, default
    inductor backend; compilation is warm-up, never timed), ``onnxruntime`` (CPU execution provider on
    ``cpu``; on a GPU TensorRT where installed, else CUDA), ``onnxruntime-cuda`` or
    ``onnxruntime-tensorrt`` (exactly that execution provider; GPU devices only), ``openvino``
    (OpenVINO's CPU plugin, with its own graph fusions)."""
    dtype: Dtype = "float32"
    """Numeric precision of the network: ``float32``, ``bfloat16`` (torch or OpenVINO on the CPU, where the
    CPU has native bf16), ``float16`` (GPU) or ``int8`` (ONNX Runtime or OpenVINO, static quantization
    calibrated on the task's data). :data:`BACKEND_DTYPES` lists what each backend runs."""
    batch_size: int = 1
    """Images per forward pass."""
    memory_format: MemoryFormat = "contiguous"
    """``contiguous`` (NCHW) or ``channels_last`` (NHWC)."""
    threads: int = 1
    """CPU threads for the runtime (intra-op)."""
    quantizer: Quantizer | None = None
    """The tool that quantizes int8 networks: ``None`` for the runtime's own (NNCF for OpenVINO,
    ``onnxruntime.quantization`` for ONNX Runtime); ``onnxruntime`` on OpenVINO quantizes the ONNX graph
    to QDQ with ONNX Runtime's tool and lets OpenVINO compile that. On three MobileNetV2s trained here
    NNCF lost 0.9-49 points of test accuracy where the QDQ graph lost 0.05-1.3, at the same latency
    (``benchmarks/runtime_matrix.py``; docs/runtimes.md)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown latency backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend in GPU_ONLY_BACKENDS and self.device == "cpu":
            raise ConfigError(f"backend {self.backend} runs on a GPU; use device 'cuda:N' or backend 'onnxruntime' on the CPU")
        if self.backend in CPU_ONLY_BACKENDS and self.device != "cpu":
            raise ConfigError(f"backend {self.backend} is measured on the CPU only; use device 'cpu' or an onnxruntime backend on a GPU")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {list(DTYPES)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"unknown memory format {self.memory_format!r}; choose one of {list(MEMORY_FORMATS)}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"unknown device {self.device!r}; use 'cpu' or 'cuda:N'")
        kind = "cpu" if self.device == "cpu" else "cuda"
        allowed = BACKEND_DTYPES[self.backend].get(kind, ())
        if self.dtype not in allowed:
            raise ConfigError(
                f"backend {self.backend} on {kind} does not run dtype {self.dtype}; choose one of {list(allowed)}"
                + (" or backend openvino / onnxruntime for int8" if self.dtype == "int8" else "")
            )
        if self.quantizer is not None:
            if self.quantizer not in QUANTIZERS:
                raise ConfigError(f"unknown int8 quantizer {self.quantizer!r}; choose one of {list(QUANTIZERS)} (or leave it unset)")
            if self.backend not in QUANTIZER_BACKENDS[self.quantizer]:
                raise ConfigError(f"int8 quantizer {self.quantizer} does not feed backend {self.backend}; "
                                  f"it feeds {', '.join(QUANTIZER_BACKENDS[self.quantizer])}")
        if self.batch_size < 1 or self.threads < 1:
            raise ConfigError("batch_size and threads of a latency target must be at least 1")

    @property
    def exports_onnx(self) -> bool:
        """True for the backends that run a graph exported to ONNX (onnxruntime and OpenVINO)."""
        return self.uses_onnxruntime or self.backend == "openvino"

    @property
    def uses_onnxruntime(self) -> bool:
        """True for the backends that run an exported ONNX graph in onnxruntime."""
        return self.backend.startswith("onnxruntime")

    def to_dict(self) -> dict:
        """The fields; ``quantizer`` only when set, so that targets written before it existed keep their cache keys."""
        d = asdict(self)
        if d["quantizer"] is None:
            del d["quantizer"]
        return d

    def __repr__(self) -> str:  # from to_dict: stage fingerprints hash it, and an unset quantizer must not move them
        return f"LatencyTarget({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def canonical_json(self) -> str:
        """Compact JSON with sorted keys: equal targets give equal strings (cache keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """Short human-readable form, e.g. ``cpu/torch/float32/batch 1/contiguous/1 thread``."""
        threads = f"{self.threads} thread" + ("s" if self.threads != 1 else "")
        quantizer = f"/int8 by {self.quantizer}" if self.quantizer else ""
        return f"{self.device}/{self.backend}/{self.dtype}/batch {self.batch_size}/{self.memory_format}/{threads}{quantizer}"

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyTarget":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown latency target field {sorted(unknown)[0]!r}; known fields are {sorted(known)}")
        return cls(**d)
