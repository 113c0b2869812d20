"""Export a saved student for deployment: ONNX (checked in ONNX Runtime) or TorchScript."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import HantError

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17


@dataclass
class ExportResult:
    """Where the student went, and how closely the exported graph reproduces torch."""

    path: Path
    format: str
    max_abs_diff: float


def _example(input_shape: tuple[int, ...], batch_size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, *input_shape, generator=generator)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, batch_size: int = 2) -> ExportResult:
    """Write ``model`` as ONNX with a dynamic batch axis and compare ONNX Runtime with torch on a fixed input."""
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = _example(input_shape, batch_size)
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        warnings.simplefilter("ignore")
        tmp_path = Path(tmp) / path.name
        torch.onnx.export(
            model,
            (x,),
            str(tmp_path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
        expected = model(x).numpy()
        session = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        tmp_path.replace(path)
    return ExportResult(path, "onnx", float(np.abs(got - expected).max()))


def export_torchscript(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, batch_size: int = 2) -> ExportResult:
    """Trace ``model`` to TorchScript and compare the traced graph with eager torch on a fixed input."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = _example(input_shape, batch_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tracing is deprecated in favour of torch.export
        traced = torch.jit.trace(model, x)
        diff = float((traced(x) - model(x)).abs().max())
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            tmp_path = Path(tmp) / path.name
            traced.save(str(tmp_path))
            tmp_path.replace(path)
    return ExportResult(path, "torchscript", diff)


def export_model(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, fmt: str) -> ExportResult:
    """Export in format ``fmt`` (``onnx`` or ``torchscript``)."""
    if fmt == "onnx":
        return export_onnx(model, input_shape, path)
    if fmt == "torchscript":
        return export_torchscript(model, input_shape, path)
    raise HantError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
