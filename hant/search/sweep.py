"""A budget sweep: the optimal selection at each of a series of budgets, each solve warm-started from the
previous one (budgets are solved in increasing order, so the previous selection still fits)."""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InfeasibleBudgetError, SearchError
from .problem import CHANGED, Problem, Selection
from .solve import solve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPoint:
    """One budget of a sweep: its selection, or why there is none."""

    budget_ms: float
    selection: Selection | None
    error: str | None = None
    min_latency_ms: float | None = None
    """Set when the budget is below the smallest achievable latency."""

    def to_dict(self, reference_ms: float | None = None) -> dict:
        """The point as JSON: budget, predicted latency, total score, selection (and fractions of
        ``reference_ms`` when given)."""
        d: dict = {"budget_ms": self.budget_ms}
        if reference_ms:
            d["budget_fraction"] = self.budget_ms / reference_ms
        sel = self.selection
        if sel is None:
            d.update(status="infeasible", error=self.error, min_latency_ms=self.min_latency_ms)
            return d
        d.update(
            predicted_latency_ms=sel.predicted_latency_ms,
            total_score=sel.total_score,
            status=sel.status,
            gap=sel.gap,
            solve_seconds=sel.solve_seconds,
            changed_slots=sel.extras[CHANGED],
            selection=sel.choices,
        )
        if reference_ms:
            d["predicted_fraction"] = sel.predicted_latency_ms / reference_ms
        return d


def sweep(
    problem: Problem,
    budgets_ms: Sequence[float],
    *,
    backend: str = "cpsat",
    time_limit_s: float = 10.0,
    warm_start: bool = True,
) -> list[SweepPoint]:
    """Solve ``problem`` at every budget (its own ``budget_ms`` is ignored), in increasing budget order.

    A budget below the smallest achievable latency yields a point without selection; any other
    SearchError (a malformed problem, limits that cannot be met together) is raised.
    """
    if not budgets_ms:
        raise SearchError("the sweep has no budgets; give at least one")
    for b in budgets_ms:
        if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
            raise SearchError(f"sweep budget {b!r} must be a positive number of milliseconds")
    points: list[SweepPoint] = []
    previous: dict[str, str] | None = None
    for budget in sorted(budgets_ms):
        try:
            sel = solve(
                dataclasses.replace(problem, budget_ms=float(budget)),
                backend=backend,
                time_limit_s=time_limit_s,
                hint=previous if warm_start else None,
            )
        except InfeasibleBudgetError as exc:
            points.append(SweepPoint(float(budget), None, str(exc), exc.min_latency_ms))
            continue
        points.append(SweepPoint(float(budget), sel))
        previous = sel.choices
        log.info("sweep: budget %.4f ms -> score %.6g at %.4f ms", budget, sel.total_score, sel.predicted_latency_ms)
    return points


def keep_latency_ms(problem: Problem) -> float:
    """Latency of the selection that keeps every slot's first candidate (the teacher, by convention)."""
    return math.fsum([problem.fixed_latency_ms, *(slot.candidates[0].latency_ms for slot in problem.slots)])
