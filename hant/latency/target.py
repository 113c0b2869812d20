"""LatencyTarget: where and how a latency is measured; only same-target, same-fingerprint numbers compare."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError

BACKENDS = ("torch", "torch_compile", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt")
GPU_ONLY_BACKENDS = ("onnxruntime-cuda", "onnxruntime-tensorrt")
DTYPES = ("float32", "float16", "bfloat16")
MEMORY_FORMATS = ("contiguous", "channels_last")


@dataclass(frozen=True)
class LatencyTarget:
    """The deployment target of a latency measurement."""

    device: str = "cpu"
    """``cpu`` or ``cuda:N``."""
    backend: str = "torch"
    """Runtime that executes the network: ``torch`` (eager), ``torch_compile`` (``torch.compile``, default
    inductor backend; compilation is warm-up, never timed), ``onnxruntime`` (CPU execution provider on
    ``cpu``; on a GPU TensorRT where installed, else CUDA), ``onnxruntime-cuda`` or
    ``onnxruntime-tensorrt`` (exactly that execution provider; GPU devices only)."""
    dtype: str = "float32"
    """Numeric precision; half precisions need a GPU."""
    batch_size: int = 1
    """Images per forward pass."""
    memory_format: str = "contiguous"
    """``contiguous`` (NCHW) or ``channels_last`` (NHWC)."""
    threads: int = 1
    """CPU threads for the runtime (intra-op)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown latency backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend in GPU_ONLY_BACKENDS and self.device == "cpu":
            raise ConfigError(f"backend {self.backend} runs on a GPU; use device 'cuda:N' or backend 'onnxruntime' on the CPU")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {list(DTYPES)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"unknown memory format {self.memory_format!r}; choose one of {list(MEMORY_FORMATS)}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"unknown device {self.device!r}; use 'cpu' or 'cuda:N'")
        if self.device == "cpu" and self.dtype != "float32":
            raise ConfigError(f"dtype {self.dtype} is only measured on a GPU here; use float32 on the CPU")
        if self.batch_size < 1 or self.threads < 1:
            raise ConfigError("batch_size and threads of a latency target must be at least 1")

    @property
    def uses_onnxruntime(self) -> bool:
        """True for the backends that run an exported ONNX graph in onnxruntime."""
        return self.backend.startswith("onnxruntime")

    def to_dict(self) -> dict:
        return asdict(self)

    def canonical_json(self) -> str:
        """Compact JSON with sorted keys: equal targets give equal strings (cache keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """Short human-readable form, e.g. ``cpu/torch/float32/batch 1/contiguous/1 thread``."""
        threads = f"{self.threads} thread" + ("s" if self.threads != 1 else "")
        return f"{self.device}/{self.backend}/{self.dtype}/batch {self.batch_size}/{self.memory_format}/{threads}"

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyTarget":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown latency target field {sorted(unknown)[0]!r}; known fields are {sorted(known)}")
        return cls(**d)
