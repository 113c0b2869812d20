"""Timed runners: one object per measured item that runs it ``n`` times and returns the elapsed seconds.

Backends: eager torch on CPU (wall clock) or CUDA (CUDA events after a device synchronisation),
``torch.compile`` (the same timers around the compiled module; compiling happens in the untimed
warm-up), and onnxruntime (wall clock around ``run_with_iobinding``; inputs and outputs stay on the device).
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from .onnx_export import INPUT_NAME, export_onnx
from .runtime import TORCH_DTYPES, import_onnxruntime, ort_providers, torch_device
from .target import LatencyTarget

log = logging.getLogger(__name__)


class Runner(Protocol):
    """Something that can be timed: ``time(n)`` runs ``n`` forward calls and returns seconds."""

    def time(self, n: int) -> float: ...


def make_input(shape: tuple[int, ...], target: LatencyTarget) -> torch.Tensor:
    """``torch.randn(batch_size, *shape)`` on the target's device, dtype and memory format."""
    x = torch.randn(target.batch_size, *shape, device=torch_device(target), dtype=TORCH_DTYPES[target.dtype])
    if target.memory_format == "channels_last" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_module(module: nn.Module, target: LatencyTarget) -> nn.Module:
    """The module in eval mode on the target device, dtype and memory format.

    The caller's module is only moved when it already sits there; otherwise a copy is converted, so
    measuring never changes the user's weights' device or precision. Call :func:`restore_modes` after.
    """
    dev = torch_device(target)
    dtype = TORCH_DTYPES[target.dtype]
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
    if target.device != "cpu" and not target.uses_onnxruntime:
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


class OrtRunner:
    """An onnxruntime session with bound input and outputs, timed with the wall clock.

    ``run_with_iobinding`` returns once the providers have finished, and on a GPU the outputs are
    synchronised explicitly as well, so the wall clock covers the whole computation.
    """

    def __init__(self, session: Any, binding: Any, keep_alive: Any, on_gpu: bool, clock: Callable[[], float]):
        self.session, self.binding, self._keep_alive, self.on_gpu = session, binding, keep_alive, on_gpu
        self.clock = clock

    def time(self, n: int) -> float:
        session, binding, clock = self.session, self.binding, self.clock
        t0 = clock()
        for _ in range(n):
            session.run_with_iobinding(binding)
        if self.on_gpu:
            binding.synchronize_outputs()
        return clock() - t0


def torch_runner(module: nn.Module, shape: tuple[int, ...], target: LatencyTarget) -> Runner:
    """A runner for eager or compiled PyTorch; ``module`` must come from :func:`prepare_module`."""
    x = make_input(shape, target)
    if target.backend == "torch_compile":
        module = torch.compile(module, dynamic=False)
    if x.device.type == "cuda":
        return TorchCudaRunner(module, x)
    return TorchCpuRunner(module, x, cpu_clock(target))


def ort_runner(module: nn.Module, shape: tuple[int, ...], target: LatencyTarget, onnx_path: Path, name: str) -> Runner:
    """Export ``module`` (from :func:`prepare_module`) to ``onnx_path`` and open a session on it."""
    ort = import_onnxruntime()
    providers = ort_providers(target)
    x = make_input(shape, target).contiguous()
    path = export_onnx(module, x, onnx_path, name)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = target.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Sessions are timed interleaved: an idle pool spinning after its run would steal cores from the next.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)

    binding = session.io_binding()
    arr = x.detach().cpu().numpy()
    on_gpu = target.device != "cpu"
    if on_gpu:
        idx = x.device.index or 0
        keep: Any = ort.OrtValue.ortvalue_from_numpy(arr, "cuda", idx)
        binding.bind_ortvalue_input(INPUT_NAME, keep)
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", idx)
    else:
        keep = arr
        binding.bind_cpu_input(INPUT_NAME, arr)
        for out in session.get_outputs():
            binding.bind_output(out.name)
    log.debug("onnxruntime session for %s on %s", name, session.get_providers())
    return OrtRunner(session, binding, keep, on_gpu, cpu_clock(target) if not on_gpu else time.perf_counter)


def build_runner(
    module: nn.Module, shape: tuple[int, ...], target: LatencyTarget, onnx_path: Path | None, name: str
) -> Runner:
    """A runner for ``target.backend``; ``onnx_path`` is where the ONNX file goes (onnxruntime only)."""
    if target.uses_onnxruntime:
        if onnx_path is None:
            raise ValueError("the onnxruntime backend needs a path for the exported model")
        return ort_runner(module, shape, target, onnx_path, name)
    return torch_runner(module, shape, target)
