"""Timed runners: one object per measured item that runs it ``n`` times and returns the elapsed seconds.

Backends: eager torch on CPU (wall clock) or CUDA (CUDA events after a device synchronisation),
``torch.compile`` (the same timers around the compiled module; compiling happens in the untimed
warm-up), and the exported backends, onnxruntime and OpenVINO: the module is exported to ONNX,
quantized by the runtime's own tool where its precision plan has int8 (calibrated on real inputs),
compiled by the runtime, and timed around calls on a bound input (see :mod:`hant.deploy`).
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from ..deploy.onnx import export_onnx
from ..deploy.plan import PrecisionPlan
from ..deploy.quantize import calibration_batches
from ..deploy.runtimes import Deployed, deploy_onnx
from ..errors import LatencyError
from .runtime import module_dtype, torch_device
from .target import LatencyTarget

log = logging.getLogger(__name__)


class Runner(Protocol):
    """Something that can be timed: ``time(n)`` runs ``n`` forward calls and returns seconds."""

    def time(self, n: int) -> float: ...


def make_input(shape: tuple[int, ...], target: LatencyTarget) -> torch.Tensor:
    """``torch.randn(batch_size, *shape)`` on the target's device, dtype and memory format."""
    x = torch.randn(target.batch_size, *shape, device=torch_device(target), dtype=module_dtype(target))
    if target.memory_format == "channels_last" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_module(module: nn.Module, target: LatencyTarget) -> nn.Module:
    """The module in eval mode on the target device, dtype and memory format.

    The caller's module is only moved when it already sits there; otherwise a copy is converted, so
    measuring never changes the user's weights' device or precision. Call :func:`restore_modes` after.
    """
    dev = torch_device(target)
    dtype = module_dtype(target)
    tensors = list(module.parameters()) + list(module.buffers())
    in_place = all(t.device == dev and (not t.is_floating_point() or t.dtype == dtype) for t in tensors)
    if target.memory_format == "channels_last" and any(t.dim() == 4 for t in tensors):
        in_place = False
    m = module if in_place else copy.deepcopy(module).to(device=dev, dtype=dtype)
    if target.memory_format == "channels_last":
        m = m.to(memory_format=torch.channels_last)
    return m.eval()


def training_modes(module: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Each submodule with its ``training`` flag, to undo ``eval()`` later."""
    return [(m, m.training) for m in module.modules()]


def restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    """Put back the training flags recorded by :func:`training_modes`."""
    for m, flag in modes:
        m.training = flag


def cpu_clock(target: LatencyTarget) -> Callable[[], float]:
    """The clock of a CPU measurement: the calling thread's CPU time when the target runs on one
    thread (the work then all happens in this thread, and time the scheduler gives to other
    processes on a shared machine is not counted), else the wall clock."""
    return time.thread_time if target.threads == 1 else time.perf_counter


def timer_name(target: LatencyTarget) -> str:
    """What measures a latency on ``target``: ``cuda_events``, ``thread_cpu_time`` or ``wall_clock``."""
    if target.device != "cpu" and not target.exports_onnx:
        return "cuda_events"
    if target.device == "cpu" and target.threads == 1:
        return "thread_cpu_time"
    return "wall_clock"


class TorchCpuRunner:
    """PyTorch on the CPU, timed with :func:`cpu_clock`."""

    def __init__(self, module: Callable[[torch.Tensor], Any], x: torch.Tensor, clock: Callable[[], float]):
        self.module, self.x, self.clock = module, x, clock

    def time(self, n: int) -> float:
        module, x, clock = self.module, self.x, self.clock
        t0 = clock()
        for _ in range(n):
            module(x)
        return clock() - t0


class TorchCudaRunner:
    """Eager PyTorch on a GPU, timed with CUDA events on the current stream after a synchronisation."""

    def __init__(self, module: nn.Module, x: torch.Tensor):
        self.module, self.x = module, x
        self.device = x.device
        with torch.cuda.device(self.device):
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)

    def time(self, n: int) -> float:
        module, x = self.module, self.x
        with torch.cuda.device(self.device):
            torch.cuda.synchronize(self.device)  # nothing queued earlier may land inside the window
            self.start.record()
            for _ in range(n):
                module(x)
            self.end.record()
            self.end.synchronize()
            return self.start.elapsed_time(self.end) / 1e3


class DeployedRunner:
    """A network compiled by its runtime (:class:`hant.deploy.Deployed`) with a bound input."""

    def __init__(self, deployed: Deployed, clock: Callable[[], float]):
        self.deployed, self.clock = deployed, clock

    def time(self, n: int) -> float:
        return self.deployed.time(n, self.clock)


def torch_runner(module: nn.Module, shape: tuple[int, ...], target: LatencyTarget) -> Runner:
    """A runner for eager or compiled PyTorch; ``module`` must come from :func:`prepare_module`."""
    x = make_input(shape, target)
    if target.backend == "torch_compile":
        module = torch.compile(module, dynamic=False)
    if x.device.type == "cuda":
        return TorchCudaRunner(module, x)
    return TorchCpuRunner(module, x, cpu_clock(target))


def exported_runner(
    module: nn.Module,
    shape: tuple[int, ...],
    target: LatencyTarget,
    onnx_path: Path,
    name: str,
    plan: PrecisionPlan,
    calibration: np.ndarray | None,
) -> Runner:
    """Export ``module`` (from :func:`prepare_module`) to ``onnx_path``, quantize it where ``plan`` has int8
    (on ``calibration``, per-sample inputs of the task), compile it in the target's runtime, bind an input."""
    x = make_input(shape, target).contiguous()
    path = export_onnx(module, x, onnx_path, name)
    # Timing needs the quantized graph, not the best scales: one batch of the task's real inputs
    # calibrates it (the int8 scores and the exported artifact calibrate on 256 samples).
    batches = calibration_batches(calibration, target.batch_size, limit=target.batch_size) if calibration is not None else None
    deployed = deploy_onnx(path, target, plan, calibration=batches, what=name)
    deployed.bind(x.detach().cpu().numpy())
    on_gpu = target.device != "cpu"
    return DeployedRunner(deployed, time.perf_counter if on_gpu else cpu_clock(target))


def build_runner(
    module: nn.Module,
    shape: tuple[int, ...],
    target: LatencyTarget,
    onnx_path: Path | None,
    name: str,
    plan: PrecisionPlan | None = None,
    calibration: np.ndarray | None = None,
) -> Runner:
    """A runner for ``target.backend``; ``onnx_path`` is where the ONNX file goes (exported backends only).

    ``plan`` defaults to the whole module in ``target.dtype``; torch backends run uniform plans only.
    """
    plan = plan or PrecisionPlan(target.dtype)
    if target.exports_onnx:
        if onnx_path is None:
            raise ValueError("the exported backends need a path for the exported model")
        return exported_runner(module, shape, target, onnx_path, name, plan, calibration)
    if plan.overrides:
        raise LatencyError(
            f"{name} is planned in mixed precision ({plan.describe()}); backend {target.backend} runs one precision "
            "per network here, so use backend openvino or onnxruntime for per-slot precisions"
        )
    return torch_runner(module, shape, target)
