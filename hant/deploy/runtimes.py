"""An exported network compiled by its target runtime: run it on real inputs, or time it.

``deploy_onnx`` takes an ONNX file and a :class:`PrecisionPlan` and returns a :class:`Deployed`
network: for ONNX Runtime a session on the file (quantized to QDQ first where the plan has int8), for
OpenVINO a model compiled by the CPU plugin (quantized by NNCF first) with the target's threads, one
stream, the latency hint and the plan's floating precision as the inference precision. The same
object serves the latency measurement, the scoring of int8 candidates on their real outputs, and
``hant export``, so what is timed, what is scored and what is shipped are one artifact.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DeployError
from ..latency.runtime import check_openvino, import_onnxruntime, import_openvino, ort_providers
from ..latency.target import LatencyTarget
from .onnx import INPUT_NAME
from .plan import PrecisionPlan
from .quantize import quantize_onnx, quantize_openvino

log = logging.getLogger(__name__)

OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}


def openvino_config(target: LatencyTarget, plan: PrecisionPlan) -> dict[str, Any]:
    """Compile options: the target's threads, one stream, the latency hint, the plan's float precision."""
    return {
        "INFERENCE_NUM_THREADS": target.threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": OV_PRECISION[plan.float_dtype],
    }


class Deployed:
    """A compiled network: ``run`` on an input batch, ``bind`` one input and ``time`` ``n`` calls on it."""

    def __init__(self, artifact: Path, infer: Callable[[np.ndarray], np.ndarray],
                 bind: Callable[[np.ndarray], Callable[[], Any]], plan: PrecisionPlan, backend: str):
        self.artifact, self.plan, self.backend = artifact, plan, backend
        self._infer, self._bind = infer, bind
        self._call: Callable[[], Any] | None = None
        self._bound: Any = None

    def run(self, x: np.ndarray) -> np.ndarray:
        """The network's output on ``x`` (float32, copied out of the runtime's buffers)."""
        return np.array(self._infer(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)

    def bind(self, x: np.ndarray) -> None:
        """Fix the input of :meth:`time` (bound once: timing copies nothing per call)."""
        self._bound = np.ascontiguousarray(x, dtype=np.float32)  # runtimes read this memory on every call
        self._call = self._bind(self._bound)

    def time(self, n: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """Seconds that ``n`` calls on the bound input take."""
        if self._call is None:
            raise DeployError("bind an input before timing a deployed network")
        call = self._call
        t0 = clock()
        for _ in range(n):
            call()
        return clock() - t0


def read_onnx(ov: Any, core: Any, onnx_path: Path) -> Any:
    """The ONNX file as the OpenVINO model ``ov.convert_model`` gives, at a fraction of its cost.

    ``convert_model`` is ``read_model`` plus the MOC graph passes (Swish and other fusions, weight
    compression of FakeQuantize inputs, fused-name clean-up), wrapped in the converter's argument
    handling, pre-processing build and telemetry: 0.78-0.91 s per block here, where reading and the
    passes alone take 0.03 s (0.21-0.39 s against 0.94-1.29 s for a whole timm network). The passes are run
    directly where this OpenVINO exposes them (``openvino._offline_transformations``, the module
    ``convert_model`` itself calls); checked on timm mobilenetv2_100, efficientnet_b0 and resnet18
    (OpenVINO 2026.4): the same operations, the same FakeQuantize nodes after NNCF and identical
    int8 outputs. Without that module, ``convert_model`` is used. NNCF must not get the bare
    ``read_model`` graph: on mobilenetv2_100 it placed 81 FakeQuantize nodes instead of 64, and the
    int8 network ran 23 % slower.
    """
    try:
        from openvino._offline_transformations import (
            apply_fused_names_cleanup, apply_moc_transformations, compress_quantize_weights_transformation,
        )
    except ImportError:
        return ov.convert_model(str(onnx_path))
    model = core.read_model(str(onnx_path))
    apply_moc_transformations(model, cf=False, smart_reshape=True)
    compress_quantize_weights_transformation(model)
    apply_fused_names_cleanup(model)
    return model


def _openvino(onnx_path: Path, target: LatencyTarget, plan: PrecisionPlan,
              calibration: Sequence[np.ndarray] | None, what: str, save_to: Path | None) -> Deployed:
    ov = import_openvino()
    check_openvino(plan.float_dtype)
    if plan.uses_int8:
        check_openvino("int8")
    core = ov.Core()
    qdq = plan.uses_int8 and target.quantizer == "onnxruntime"
    if qdq:  # ONNX Runtime's QDQ graph; OpenVINO turns its Q/DQ pairs into FakeQuantize and int8 kernels
        onnx_path = quantize_onnx(onnx_path, onnx_path.with_name(onnx_path.stem + ".qdq.onnx"), plan, calibration or [], what)
    try:
        model = read_onnx(ov, core, onnx_path)
    except Exception as e:
        raise DeployError(f"OpenVINO could not read the ONNX export of {what} ({type(e).__name__}: {str(e)[:200]})") from e
    if plan.uses_int8 and not qdq:
        model = quantize_openvino(model, plan, calibration or [], what)
    artifact = onnx_path
    if save_to is not None:
        ov.save_model(model, str(save_to), compress_to_fp16=False)
        artifact = save_to
    try:
        compiled = core.compile_model(model, "CPU", openvino_config(target, plan))
    except Exception as e:
        raise DeployError(f"OpenVINO could not compile {what} ({type(e).__name__}: {str(e)[:200]})") from e
    return _compiled_openvino(ov, compiled, artifact, plan)


def _compiled_openvino(ov: Any, compiled: Any, artifact: Path, plan: PrecisionPlan) -> Deployed:
    runner, timed = compiled.create_infer_request(), compiled.create_infer_request()

    def bind(x: np.ndarray) -> Callable[[], Any]:
        timed.set_input_tensor(ov.Tensor(x, shared_memory=True))
        return timed.infer

    return Deployed(artifact, lambda x: runner.infer({0: x})[compiled.output(0)], bind, plan, "openvino")


def _onnxruntime(onnx_path: Path, target: LatencyTarget, plan: PrecisionPlan,
                 calibration: Sequence[np.ndarray] | None, what: str, save_to: Path | None) -> Deployed:
    ort = import_onnxruntime()
    path = onnx_path
    if plan.uses_int8:
        path = quantize_onnx(onnx_path, save_to or onnx_path.with_suffix(".int8.onnx"), plan, calibration or [], what)
    elif save_to is not None:
        save_to.write_bytes(onnx_path.read_bytes())
        path = save_to
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = target.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Networks are timed interleaved: an idle pool spinning after its run would steal cores from the next.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=ort_providers(target))
    except Exception as e:
        raise DeployError(f"ONNX Runtime could not load {what} ({type(e).__name__}: {str(e)[:200]})") from e

    def infer(x: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT_NAME: x})[0]

    def bind(x: np.ndarray) -> Callable[[], Any]:
        binding = session.io_binding()
        on_gpu = target.device != "cpu"
        if on_gpu:
            idx = int(target.device.partition(":")[2] or 0)
            value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", idx)
            binding.bind_ortvalue_input(INPUT_NAME, value)
            for out in session.get_outputs():
                binding.bind_output(out.name, "cuda", idx)

            def call_gpu(_input: Any = value) -> None:  # holds the bound device copy of the input
                session.run_with_iobinding(binding)
                binding.synchronize_outputs()

            return call_gpu
        binding.bind_cpu_input(INPUT_NAME, x)
        for out in session.get_outputs():
            binding.bind_output(out.name)
        return lambda: session.run_with_iobinding(binding)

    return Deployed(path, infer, bind, plan, target.backend)


def load_artifact(path: Path, target: LatencyTarget) -> Deployed:
    """A deployment artifact written by :func:`deploy_onnx` (``save_to``), read back and compiled by its
    runtime as it is (an int8 artifact already carries its quantization)."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"no deployment artifact at {path}")
    if path.suffix == ".xml":
        ov = import_openvino()
        try:
            model = ov.Core().read_model(str(path))
        except Exception as e:
            raise DeployError(f"OpenVINO could not read {path} ({type(e).__name__}: {str(e)[:200]})") from e
        compiled = ov.Core().compile_model(model, "CPU", openvino_config(target, PrecisionPlan(target.dtype)))
        return _compiled_openvino(ov, compiled, path, PrecisionPlan(target.dtype))
    if path.suffix == ".onnx":
        return _onnxruntime(path, target, PrecisionPlan("float32"), None, str(path), None)
    raise DeployError(f"{path} is neither an OpenVINO IR (.xml) nor an ONNX file (.onnx)")


def deploy_onnx(
    onnx_path: Path,
    target: LatencyTarget,
    plan: PrecisionPlan,
    *,
    calibration: Sequence[np.ndarray] | None = None,
    what: str = "the network",
    save_to: Path | None = None,
) -> Deployed:
    """Compile the ONNX file for ``target`` under ``plan`` (quantizing on ``calibration`` where it has int8).

    ``save_to`` keeps the artifact the runtime runs: the (QDQ) ONNX file for ONNX Runtime, an OpenVINO
    IR ``.xml`` (with its ``.bin``) for OpenVINO.
    """
    if target.backend == "openvino":
        return _openvino(onnx_path, target, plan, calibration, what, save_to)
    if target.uses_onnxruntime:
        return _onnxruntime(onnx_path, target, plan, calibration, what, save_to)
    raise DeployError(f"backend {target.backend} runs torch modules, not exported files; use backend openvino or onnxruntime")
