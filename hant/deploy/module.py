"""A candidate as its runtime computes it, callable like a torch module: what int8 candidates are scored with."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DeployError
from ..latency.runtime import TORCH_DTYPES
from ..latency.target import LatencyTarget
from .onnx import export_onnx
from .plan import PrecisionPlan
from .quantize import calibration_batches
from .runtimes import Deployed, deploy_onnx

SCORING_BATCH = 64
"""Batch size of the calibration batches of a module exported with a dynamic batch axis."""


class DeployedModule(nn.Module):
    """Runs a :class:`Deployed` network on the tensors it is called with (no gradients; output on the input's device)."""

    def __init__(self, deployed: Deployed):
        super().__init__()
        self.deployed = deployed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.deployed.run(x.detach().float().cpu().numpy())
        return torch.from_numpy(out).to(device=x.device)


class CastModule(nn.Module):
    """A copy of a module run in another floating precision (torch backends): cast in, compute, cast back."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = copy.deepcopy(module).to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(self.dtype)).float()


def deployed_module(
    module: nn.Module,
    in_shape: tuple[int, ...],
    target: LatencyTarget,
    plan: PrecisionPlan,
    workdir: Path,
    name: str,
    calibration: np.ndarray | None = None,
) -> nn.Module:
    """``module`` computed as ``target``'s runtime computes it under ``plan``: exported with a dynamic
    batch, quantized on ``calibration`` (real per-sample inputs) where the plan has int8, compiled.
    On torch backends (uniform plans only) a floating precision other than float32 is a cast copy."""
    module = module.eval()
    if not target.exports_onnx:
        if plan.overrides:
            raise DeployError(f"backend {target.backend} runs one precision per network, not {plan.describe()}")
        return CastModule(module, TORCH_DTYPES[plan.default]) if plan.default != "float32" else module
    example = torch.zeros(2, *in_shape)
    path = export_onnx(module, example, Path(workdir) / f"{name}.onnx", name, dynamic_batch=True)
    batches = calibration_batches(calibration, SCORING_BATCH) if calibration is not None else None
    return DeployedModule(deploy_onnx(path, target, plan, calibration=batches, what=name))
