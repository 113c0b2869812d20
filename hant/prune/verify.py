"""Close the loop on measured latency: tighten the solver's budget until the network, measured end
to end beside the teacher, fits (the same rule as the search stage's verify rounds)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import InfeasibleBudgetError
from ..latency import LatencyTarget, measure

log = logging.getLogger(__name__)

__all__ = ["Fit", "fit_measured"]


@dataclass
class Fit:
    """The network that fit (or the last tried), with each round's numbers."""

    model: nn.Module
    rounds: list[dict] = field(default_factory=list)


def fit_measured(
    build: Callable[[float], nn.Module],
    teacher: nn.Module,
    input_shape: tuple[int, ...],
    target: LatencyTarget,
    fraction: float,
    predicted_teacher_ms: float,
    *,
    margin: float = 0.03,
    rounds: int = 4,
    **measure_kwargs,
) -> Fit:
    """Build at ``fraction`` of the predicted teacher latency; while the measured student exceeds
    ``fraction`` of the teacher measured beside it (less ``margin``), scale the budget down by the
    excess and build again. When the budget falls below the fastest network the widths allow, that
    network is the last round (and may stay over: the rounds record it)."""
    budget = fraction * predicted_teacher_ms
    fit = Fit(teacher)
    floor = False
    for r in range(max(1, rounds)):
        try:
            model = build(budget)
        except InfeasibleBudgetError as e:
            budget, floor = e.min_latency_ms, True
            model = build(budget)
        stats = measure([("teacher", teacher, input_shape), ("student", model, input_shape)], target, **measure_kwargs)
        student_ms, teacher_ms = stats["student"].median_ms, stats["teacher"].median_ms
        limit = fraction * teacher_ms * (1 - margin)
        fit.model = model
        fit.rounds.append({"budget_ms": budget, "student_ms": student_ms, "teacher_ms": teacher_ms, "limit_ms": limit})
        log.info("fit round %d: student %.3f ms, limit %.3f ms", r, student_ms, limit)
        if student_ms <= limit or floor:
            break
        budget *= limit / student_ms
    return fit
