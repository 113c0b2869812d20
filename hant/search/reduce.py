"""Exact, budget-independent reductions: drop dominated candidates; the smallest reachable latency."""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TypeVar

from .problem import Problem, SlotChoices

log = logging.getLogger(__name__)

N = TypeVar("N", int, float)


def pareto_indices(costs: Sequence[tuple[N, N]]) -> list[int]:
    """Positions of the non-dominated ``(latency, score)`` pairs, in input order.

    A pair is dominated when another has latency <= and score <= with at least one strict;
    of exact duplicates only the first one is kept, so the result is deterministic.
    """
    order = sorted(range(len(costs)), key=lambda i: (costs[i][0], costs[i][1], i))
    kept: list[int] = []
    best_score: N | None = None
    for i in order:
        score = costs[i][1]
        if best_score is None or score < best_score:
            kept.append(i)
            best_score = score
    return sorted(kept)


def remove_dominated(problem: Problem) -> Problem:
    """The same problem with every slot's dominated candidates removed; the optimum is unchanged."""
    slots = []
    before = after = 0
    for slot in problem.slots:
        keep = pareto_indices([(c.latency_ms, c.score) for c in slot.candidates])
        before += len(slot.candidates)
        after += len(keep)
        slots.append(SlotChoices(name=slot.name, candidates=tuple(slot.candidates[i] for i in keep)))
    log.debug("dominance reduction kept %d of %d candidates", after, before)
    return Problem(slots=tuple(slots), budget_ms=problem.budget_ms, fixed_latency_ms=problem.fixed_latency_ms)


def min_latency_ms(problem: Problem) -> float:
    """The smallest achievable latency: fixed latency plus every slot's fastest candidate (exactly rounded sum)."""
    return math.fsum(
        [problem.fixed_latency_ms] + [min(c.latency_ms for c in slot.candidates) for slot in problem.slots]
    )
