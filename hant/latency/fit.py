"""Close the loop on measured latency: build a network at a budget, measure it end to end beside
the teacher, and while it is over its limit tighten the budget by the measured excess and build
again. The search stage and the channel pruners both fit their networks this way."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from torch import nn

from ..deploy.plan import PrecisionPlan
from ..errors import InfeasibleBudgetError
from .measure import measure
from .target import LatencyTarget

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["MeasuredFit", "fit_measured"]


@dataclass
class MeasuredFit(Generic[T]):
    """What the last round built, with each round's budget, measurements and limit."""

    result: T
    rounds: list[dict] = field(default_factory=list)


def fit_measured(
    build: Callable[[float], tuple[T, nn.Module]],
    teacher: nn.Module,
    input_shape: tuple[int, ...],
    target: LatencyTarget,
    budget_ms: float,
    limit_ms: Callable[[float], float],
    *,
    rounds: int,
    stop_at_floor: bool = False,
    plan: Callable[[T], PrecisionPlan] | None = None,
    **measure_kwargs,
) -> MeasuredFit[T]:
    """``build(budget)`` gives (result, network); ``limit_ms(teacher_ms)`` is the most the network
    may measure beside a teacher measuring ``teacher_ms``. At most ``rounds`` rounds; the budget
    is scaled by limit / measured after each miss.

    An ``InfeasibleBudgetError`` from ``build`` propagates unless ``stop_at_floor``: then the
    fastest network the error names is built as the last round (it may stay over the limit; the
    rounds record it). ``plan(result)`` is the network's precision plan where it is not uniformly in
    ``target.dtype`` (the teacher always is).
    """
    log_rounds: list[dict] = []
    floor = False
    for r in range(max(1, rounds)):
        try:
            result, network = build(budget_ms)
        except InfeasibleBudgetError as e:
            if not stop_at_floor:
                raise
            budget_ms, floor = e.min_latency_ms, True
            result, network = build(budget_ms)
        pair = [("teacher", teacher, input_shape), ("student", network, input_shape)]
        plans = {"student": plan(result)} if plan is not None else None
        stats = measure(pair, target, plans=plans, **measure_kwargs)
        student_ms, teacher_ms = stats["student"].median_ms, stats["teacher"].median_ms
        limit = limit_ms(teacher_ms)
        log_rounds.append(
            {"budget_ms": budget_ms, "student_ms": student_ms, "teacher_ms": teacher_ms, "limit_ms": limit}
        )
        log.info("fit round %d: student %.3f ms, limit %.3f ms", r, student_ms, limit)
        if student_ms <= limit or floor:
            break
        budget_ms *= limit / student_ms
    return MeasuredFit(result, log_rounds)
