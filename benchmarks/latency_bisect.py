"""Equal measured latency for baselines that prune by a knob, not a latency: bisection on the knob.

Torch-Pruning takes a channel ratio and ModelOpt FastNAS a FLOPs fraction; neither knows the target's
latency. The benchmark therefore measures the pruned network beside the teacher on the target and
bisects for the smallest knob whose network is within the budget, less a margin.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from torch import nn

from hant.latency import LatencyTarget, measure

KNOB_RANGE = (0.0, 0.95)
"""Knob values bisected over (0: the teacher; the network gets faster as the knob grows)."""


def bisect_knob(
    build: Callable[[float], nn.Module], teacher: nn.Module, input_shape: tuple, target: LatencyTarget,
    fraction: float, margin: float, iterations: int, calibration: np.ndarray | None = None,
    knob_range: tuple[float, float] = KNOB_RANGE, **timing,
) -> tuple[float, float, list[dict]]:
    """The smallest knob in ``knob_range`` (to its width / 2^iterations) whose ``build(knob)``
    measures within ``fraction`` × the teacher beside it, less ``margin``; returns (knob, its measured
    ms, the trials). ``calibration`` (real per-sample inputs) is what an int8 target quantizes on."""
    lo, hi = knob_range
    hi_ms, trials = None, []

    def timed(net: nn.Module) -> dict:
        items = [("teacher", teacher, input_shape), ("student", net, input_shape)]
        images = None if calibration is None else {"teacher": calibration, "student": calibration}
        return measure(items, target, calibration=images, **timing)

    for _ in range(iterations):
        mid = (lo + hi) / 2
        stats = timed(build(mid))
        student_ms, teacher_ms = stats["student"].median_ms, stats["teacher"].median_ms
        fits = student_ms <= fraction * teacher_ms * (1 - margin)
        trials.append({"knob": mid, "student_ms": student_ms, "teacher_ms": teacher_ms, "fits": fits})
        if fits:
            hi, hi_ms = mid, student_ms
        else:
            lo = mid
    if hi_ms is None:
        hi_ms = timed(build(hi))["student"].median_ms
    return hi, hi_ms, trials
