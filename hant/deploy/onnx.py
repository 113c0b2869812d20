"""The one ONNX exporter: a module to an ONNX file, with the exporter that is installed.

The TorchScript-based exporter (``dynamo=False``) needs nothing beyond torch and is tried first; the
torch.export-based exporter needs ``onnxscript`` and is the fallback when that package is present.
Node names follow the module hierarchy (``/layer1/layer1.0/conv1/Conv``), which is how a precision
plan finds the nodes of one slot (:func:`scope_prefix`).

This is hant's only ONNX exporter (latency measurement, int8 scoring and ``hant export`` all call it).
timm's ``onnx_export`` does not fit it: that function always makes the batch axis symbolic, while
latencies are measured on fixed-shape graphs (the shapes the runtimes compile and time, as deployed),
and it tries one exporter only, with a forward pass of its own on every call (a profile exports
hundreds of candidates).
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import DeployError

log = logging.getLogger(__name__)

INPUT_NAME = "x"
OUTPUT_NAME = "y"
ONNX_OPSET = 17


def _has_onnxscript() -> bool:
    return importlib.util.find_spec("onnxscript") is not None


def scope_prefix(path: str) -> str:
    """The prefix of the ONNX node names of module ``path`` (``layer1.0`` -> ``/layer1/layer1.0/``)."""
    parts = path.split(".")
    return "/" + "/".join(".".join(parts[: i + 1]) for i in range(len(parts))) + "/"


def export_onnx(
    module: nn.Module, example: torch.Tensor, path: Path, name: str = "module", *, dynamic_batch: bool = False
) -> Path:
    """Write ``module`` (in eval mode, already on the example's device and dtype) as ONNX to ``path``.

    With ``dynamic_batch`` the first axis of input and output is symbolic, so one file serves any batch size.
    """
    errors: list[str] = []
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True,
            )
            return path
        except Exception as e:  # any exporter failure: try the other exporter, then report both
            errors.append(f"TorchScript exporter: {type(e).__name__}: {e}")
            log.debug("TorchScript ONNX export of %s failed: %s", name, e)
        if _has_onnxscript():
            try:
                shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
                program = torch.onnx.export(
                    module, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_shapes=shapes,
                )
                program.save(str(path))
                return path
            except Exception as e:
                errors.append(f"torch.export exporter: {type(e).__name__}: {e}")
    hint = "measure it with backend 'torch'"
    if not _has_onnxscript():
        hint = "install onnxscript to try the newer exporter, or " + hint
    raise DeployError(f"could not export {name} to ONNX ({'; '.join(errors)[:300]}); {hint}")
