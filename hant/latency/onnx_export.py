"""Export one module to an ONNX file for the onnxruntime backend, with the exporter that is installed.

The TorchScript-based exporter (``dynamo=False``) needs nothing beyond torch and is tried first; the
torch.export-based exporter needs ``onnxscript`` and is the fallback when that package is present.
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import LatencyError

log = logging.getLogger(__name__)

INPUT_NAME = "x"


def _has_onnxscript() -> bool:
    return importlib.util.find_spec("onnxscript") is not None


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, name: str = "module") -> Path:
    """Write ``module`` (in eval mode, already on the example's device and dtype) as ONNX to ``path``."""
    errors: list[str] = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module, (example,), str(path), dynamo=False, input_names=[INPUT_NAME], do_constant_folding=True
            )
            return path
        except Exception as e:  # any exporter failure: try the other exporter, then report both
            errors.append(f"TorchScript exporter: {type(e).__name__}: {e}")
            log.debug("TorchScript ONNX export of %s failed: %s", name, e)
        if _has_onnxscript():
            try:
                program = torch.onnx.export(module, (example,), dynamo=True, input_names=[INPUT_NAME])
                program.save(str(path))
                return path
            except Exception as e:
                errors.append(f"torch.export exporter: {type(e).__name__}: {e}")
    hint = "measure it with backend 'torch'"
    if not _has_onnxscript():
        hint = "install onnxscript to try the newer exporter, or " + hint
    raise LatencyError(f"could not export {name} to ONNX ({'; '.join(errors)[:300]}); {hint}")
