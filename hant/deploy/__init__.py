"""Deployment: one ONNX exporter, precision plans, the runtimes' own int8 quantizers, compiled networks."""
from __future__ import annotations

from .module import DeployedModule, deployed_module
from .onnx import INPUT_NAME, export_onnx, scope_prefix
from .plan import INT8, PrecisionPlan, split_precision, uniform, with_precision
from .quantize import CALIBRATION_SAMPLES, calibration_batches
from .runtimes import Deployed, deploy_onnx, load_artifact

__all__ = [
    "CALIBRATION_SAMPLES",
    "INPUT_NAME",
    "INT8",
    "Deployed",
    "DeployedModule",
    "PrecisionPlan",
    "calibration_batches",
    "deploy_onnx",
    "deployed_module",
    "load_artifact",
    "export_onnx",
    "scope_prefix",
    "split_precision",
    "uniform",
    "with_precision",
]
