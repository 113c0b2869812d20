"""Fit a pruned network to its budget on measured latency (``hant.latency.fit``), the rule the
search stage uses: a fraction of the teacher measured beside it, less a noise margin."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from ..latency import LatencyTarget
from ..latency.fit import MeasuredFit
from ..latency.fit import fit_measured

__all__ = ["fit_to_fraction"]


def fit_to_fraction(
    build: Callable[[float], nn.Module],
    teacher: nn.Module,
    input_shape: tuple[int, ...],
    target: LatencyTarget,
    fraction: float,
    predicted_teacher_ms: float,
    *,
    margin: float = 0.03,
    rounds: int = 4,
    calibration: np.ndarray | None = None,
    **measure_kwargs,
) -> MeasuredFit[nn.Module]:
    """Build at ``fraction`` of the predicted teacher latency; while the measured student exceeds
    ``fraction`` of the teacher measured beside it (less ``margin``), scale the budget down by the
    excess and build again. When the budget falls below the fastest network the widths allow, that
    network is the last round (and may stay over: the rounds record it). ``calibration`` (the task's
    per-sample network inputs) is what teacher and student are quantized on, required on an int8 target."""
    if calibration is not None:
        measure_kwargs["calibration"] = {"teacher": calibration, "student": calibration}

    def build_network(budget: float) -> tuple[nn.Module, nn.Module]:
        model = build(budget)
        return model, model

    return fit_measured(
        build_network, teacher, input_shape, target, fraction * predicted_teacher_ms,
        lambda teacher_ms: fraction * teacher_ms * (1 - margin),
        rounds=rounds, stop_at_floor=True, **measure_kwargs,
    )
