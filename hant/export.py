"""Export a student as its target runs it: OpenVINO IR, ONNX (QDQ where int8) or TorchScript.

The artifact is written by the same deployment path the latency measurement and the int8 scores use
(:mod:`hant.deploy`): exported to ONNX with a dynamic batch axis, quantized by the runtime's own tool
on the task's images where the precision plan has int8, saved in the runtime's format.
"""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .deploy import PrecisionPlan, deploy_onnx, export_onnx, load_artifact
from .deploy.quantize import calibration_batches
from .errors import HantError
from .latency.target import BACKEND_DTYPES, LatencyTarget

FORMATS = ("auto", "openvino", "onnx", "torchscript")
SUFFIXES = {"openvino": ".xml", "onnx": ".onnx", "torchscript": ".pt"}


@dataclass
class ExportResult:
    """Where the student went, and how far the artifact's outputs are from torch's float32 ones."""

    path: Path
    format: str
    max_abs_diff: float
    """On a fixed input: rounding for float artifacts, the quantization error for int8 ones."""


def artifact_format(target: LatencyTarget) -> str:
    """The format ``auto`` means for ``target``: what its runtime loads."""
    if target.backend == "openvino":
        return "openvino"
    if target.uses_onnxruntime:
        return "onnx"
    return "torchscript"


def _example(input_shape: tuple[int, ...], batch_size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, *input_shape, generator=generator)


def _torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> ExportResult:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tracing is deprecated in favour of torch.export
        traced = torch.jit.trace(model, x)
        diff = float((traced(x) - model(x)).abs().max())
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            tmp_path = Path(tmp) / path.name
            traced.save(str(tmp_path))
            tmp_path.replace(path)
    return ExportResult(path, "torchscript", diff)


def export_student(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    fmt: str = "auto",
    target: LatencyTarget | None = None,
    plan: PrecisionPlan | None = None,
    calibration: np.ndarray | None = None,
) -> ExportResult:
    """Write ``model`` as ``fmt`` for ``target`` under ``plan`` (default: the target's dtype throughout),
    calibrating int8 on ``calibration`` (real per-sample inputs). ``path`` gets the format's suffix."""
    target = target or LatencyTarget()
    plan = plan or PrecisionPlan(target.dtype)
    fmt = artifact_format(target) if fmt == "auto" else fmt
    if fmt not in SUFFIXES:
        raise HantError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    path = Path(path).with_suffix(SUFFIXES[fmt])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HantError(f"cannot create the export directory {path.parent} ({e.strerror}); choose another --out") from None
    model = model.eval()
    x = _example(input_shape, 2)
    if fmt == "torchscript":
        if plan.uses_int8 or plan.default != "float32":
            raise HantError(f"TorchScript export runs float32 only, not {plan.describe()}; choose format openvino or onnx")
        return _torchscript(model, x, path)
    backend = "openvino" if fmt == "openvino" else "onnxruntime"
    runtime = target if target.backend == backend else LatencyTarget(backend=backend, threads=target.threads)
    if plan.float_dtype not in BACKEND_DTYPES[backend]["cpu"]:
        raise HantError(f"format {fmt} does not run {plan.float_dtype}; choose another format or precision")
    batches = calibration_batches(calibration, 64) if calibration is not None else None
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        onnx_path = export_onnx(model, x, Path(tmp) / "float.onnx", "the student", dynamic_batch=True)
        staged = Path(tmp) / path.name
        deploy_onnx(onnx_path, runtime, plan, calibration=batches, what="the student", save_to=staged)
        got = load_artifact(staged, runtime).run(x.numpy())
        with torch.no_grad():
            expected = model(x).numpy()
        for side in (staged.with_suffix(".bin"),) if fmt == "openvino" else ():
            side.replace(path.with_suffix(".bin"))
        staged.replace(path)
    return ExportResult(path, fmt, float(np.abs(got - expected).max()))
