"""Close the loop on measured latency: build a network at a budget, measure it end to end beside
the teacher; while it is over its limit tighten the budget by the measured excess, and while it
leaves more than :data:`SLACK` of the limit unused raise it, bisecting once a budget on each side is
known; keep the network of the highest budget that measured within the limit. A miss by less than
:data:`SLACK` is measured once more before the budget moves, since one pair measurement on a shared
machine drifts by that much. The search stage and the channel pruners both fit their networks this
way."""
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

__all__ = ["SLACK", "MeasuredFit", "chosen_round", "fit_measured"]

SLACK = 0.1
"""A network measured this fraction or more below its limit leaves budget unused: the next round
raises the budget (the tables' predictions ran 13-25 % above measured students on OpenVINO int8)."""


@dataclass
class MeasuredFit(Generic[T]):
    """What the chosen round built, with each round's budget, measurements, limit and verdict."""

    result: T
    rounds: list[dict] = field(default_factory=list)
    chosen: int = -1
    """Index in ``rounds`` of the round whose network is ``result`` (its record has ``chosen: True``)."""


def chosen_round(rounds: list[dict]) -> dict:
    """The round a fit kept (the last one in logs written before rounds were marked)."""
    return next((r for r in reversed(rounds) if r.get("chosen")), rounds[-1])


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
    use_slack: bool = True,
    **measure_kwargs,
) -> MeasuredFit[T]:
    """``build(budget)`` gives (result, network); ``limit_ms(teacher_ms)`` is the most the network
    may measure beside a teacher measuring ``teacher_ms``. At most ``rounds`` rounds: after a miss
    the budget is scaled by limit / measured, after a network at least :data:`SLACK` under its limit
    too (with ``use_slack``), and once one budget measured within and a higher one over, the next
    is their midpoint. The result is the network of the highest budget measured within its limit
    (the last round's where none was).

    A round that misses by less than :data:`SLACK` of the limit is measured again and judged on
    the mean of both pair measurements (its record keeps both, under ``remeasured``).

    An ``InfeasibleBudgetError`` from ``build`` on the first round propagates unless
    ``stop_at_floor``; on a later round (a tightened budget) or with ``stop_at_floor`` the fastest
    network the error names is built as the last round (it may stay over the limit; the rounds
    record it). ``plan(result)`` is the network's precision plan where it is not uniformly in
    ``target.dtype`` (the teacher always is).
    """
    log_rounds: list[dict] = []
    best: tuple[T, int] | None = None
    over_ms: float | None = None  # the lowest budget whose network measured over its limit
    floor = False
    result = None
    for r in range(max(1, rounds)):
        try:
            result, network = build(budget_ms)
        except InfeasibleBudgetError as e:
            if r == 0 and not stop_at_floor:
                raise
            budget_ms, floor = e.min_latency_ms, True
            result, network = build(budget_ms)
        pair = [("teacher", teacher, input_shape), ("student", network, input_shape)]
        plans = {"student": plan(result)} if plan is not None else None
        stats = measure(pair, target, plans=plans, **measure_kwargs)
        student_ms, teacher_ms = stats["student"].median_ms, stats["teacher"].median_ms
        limit = limit_ms(teacher_ms)
        record = {"budget_ms": budget_ms}
        if limit < student_ms < (1 + SLACK) * limit:
            again = measure(pair, target, plans=plans, **measure_kwargs)
            record["remeasured"] = [{"student_ms": student_ms, "teacher_ms": teacher_ms},
                                    {"student_ms": again["student"].median_ms, "teacher_ms": again["teacher"].median_ms}]
            student_ms = (student_ms + again["student"].median_ms) / 2
            teacher_ms = (teacher_ms + again["teacher"].median_ms) / 2
            limit = limit_ms(teacher_ms)
        within = student_ms <= limit
        record.update(student_ms=student_ms, teacher_ms=teacher_ms, limit_ms=limit, within=within)
        log_rounds.append(record)
        log.info("fit round %d: student %.3f ms, limit %.3f ms", r, student_ms, limit)
        if within and (best is None or budget_ms > log_rounds[best[1]]["budget_ms"]):
            best = (result, r)
        if not within:
            over_ms = budget_ms if over_ms is None else min(over_ms, budget_ms)
        if floor or (within and (not use_slack or student_ms >= (1 - SLACK) * limit)):
            break
        scaled = budget_ms * limit / student_ms
        if best is not None and over_ms is not None:
            scaled = (log_rounds[best[1]]["budget_ms"] + over_ms) / 2
        budget_ms = scaled
    chosen = best[1] if best is not None else len(log_rounds) - 1
    log_rounds[chosen]["chosen"] = True
    return MeasuredFit(best[0] if best is not None else result, log_rounds, chosen)
