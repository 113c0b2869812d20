"""Static int8 post-training quantization with each runtime's own tool, calibrated on real inputs.

OpenVINO: NNCF's ``nncf.quantize`` on the OpenVINO model (FakeQuantize nodes that the CPU plugin fuses
into int8 kernels). ONNX Runtime: ``onnxruntime.quantization.quantize_static`` writing QDQ nodes,
per-channel weights. Both quantize only the nodes a :class:`PrecisionPlan` puts in int8, and both are
calibrated on batches of the task's own data (a slot's captured inputs, or images): never random tensors.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import DeployError
from ..latency.isa import cpu_features
from .onnx import INPUT_NAME
from .plan import PrecisionPlan

log = logging.getLogger(__name__)

CALIBRATION_SAMPLES = 256
"""Samples the quantizers calibrate on by default (NNCF's own default subset is 300)."""


def calibration_batches(samples: np.ndarray, batch_size: int, limit: int = CALIBRATION_SAMPLES) -> list[np.ndarray]:
    """Up to ``limit`` samples cut into batches of ``batch_size`` (a network compiled for one batch size
    takes only that); too few samples for one batch are repeated to fill it."""
    samples = np.ascontiguousarray(samples[:limit], dtype=np.float32)
    if len(samples) == 0:
        return []
    if len(samples) < batch_size:
        samples = np.concatenate([samples] * (-(-batch_size // len(samples))))[:batch_size]
    n = len(samples) // batch_size
    return [samples[i * batch_size : (i + 1) * batch_size] for i in range(n)]


def check_calibration(calibration: Sequence[np.ndarray] | None, what: str) -> Sequence[np.ndarray]:
    """The calibration batches, or a DeployError saying that int8 needs them."""
    if not calibration or not any(len(b) for b in calibration):
        raise DeployError(
            f"int8 quantization of {what} needs calibration data (batches of the task's own inputs) and got none; "
            "pass calibration batches, or choose a floating-point dtype"
        )
    return calibration


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF draws progress bars on stdout; library code never prints, so they go to a buffer (and the log)."""
    buf = io.StringIO()
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        nncf_log.setLevel(level)
        if buf.getvalue().strip():
            log.debug("nncf: %s", buf.getvalue().strip()[-500:])


def import_nncf() -> Any:
    """The ``nncf`` module, or a DeployError saying how to install it."""
    try:
        import nncf
    except ImportError:
        raise DeployError(
            "int8 on OpenVINO is quantized with NNCF, which is not installed; `pip install nncf` (or choose dtype float32)"
        ) from None
    return nncf


def quantize_openvino(model: Any, plan: PrecisionPlan, calibration: Sequence[np.ndarray], what: str) -> Any:
    """The OpenVINO model with the plan's int8 nodes quantized by NNCF on ``calibration`` batches."""
    nncf = import_nncf()
    batches = list(check_calibration(calibration, what))
    patterns = plan.float_node_patterns()
    ignored = nncf.IgnoredScope(patterns=patterns, validate=False) if patterns else None
    try:
        with _quiet():
            return nncf.quantize(
                model, nncf.Dataset(batches), subset_size=sum(len(b) for b in batches), ignored_scope=ignored
            )
    except Exception as e:  # NNCF raises many types; name the network and the cause
        raise DeployError(f"NNCF could not quantize {what} to int8 ({type(e).__name__}: {str(e)[:200]})") from e


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over in-memory batches."""

    def __init__(self, batches: Sequence[np.ndarray]):
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_onnx(src: Path, dst: Path, plan: PrecisionPlan, calibration: Sequence[np.ndarray], what: str) -> Path:
    """Write ``src`` quantized to QDQ int8 (per-channel weights, unsigned activations) to ``dst``.

    Without VNNI, x86 int8 kernels multiply unsigned by signed bytes into 16-bit sums that can
    saturate; ONNX Runtime's documentation advises 7-bit weights there (``reduce_range``), so that is
    what runs on such CPUs (the device fingerprint records the ISA).
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise DeployError("int8 on ONNX Runtime needs onnxruntime's quantization tools; `pip install onnxruntime onnx`") from None
    batches = list(check_calibration(calibration, what))
    # The pre-processing ONNX Runtime asks for (shape inference, constant folding, graph clean-up); without
    # it the exported graph's conv biases are not initializers and the int8 resnet18 of the demo ran 2x
    # slower than float32 instead of 1.7x faster. Node names survive it.
    prepared = dst.with_name(dst.stem + ".pre.onnx")
    try:
        with _quiet():
            quant_pre_process(str(src), str(prepared))
    except Exception as e:
        raise DeployError(f"ONNX Runtime could not pre-process {what} for quantization ({type(e).__name__}: {str(e)[:200]})") from e
    model = onnx.load(str(prepared))
    names = [n.name for n in model.graph.node]
    chosen = [n for n in names if plan.quantized_node(n)]
    if not chosen:
        raise DeployError(f"the precision plan of {what} puts no ONNX node in int8; check its module paths")
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_features()))
    try:
        quantize_static(
            model, str(dst), _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=not vnni, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=None if len(chosen) == len(names) else chosen,
            calibrate_method=CalibrationMethod.MinMax,
        )
    except Exception as e:
        raise DeployError(f"ONNX Runtime could not quantize {what} to int8 ({type(e).__name__}: {str(e)[:200]})") from e
    finally:
        prepared.unlink(missing_ok=True)
    return dst
