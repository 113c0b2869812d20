"""Exact, budget-independent reductions: drop dominated candidates; the smallest reachable latency.

A candidate is dominated when another candidate of its slot is no worse on every row (latency, each
limited resource, the changed-slot count) and on score, and better on one of them; of exact duplicates
only the first is kept. Swapping a dominated candidate for its dominator keeps any selection feasible
and never raises its score, so the optimum is unchanged. With ``max_changed`` the changed-slot count
is a row, so a slot's first candidate (which changes nothing) is never removed in favour of another.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from .arrays import CostTable, smallest_totals, tabulate
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


def pareto_mask(costs: np.ndarray) -> np.ndarray:
    """Which columns of ``costs`` (shape (criteria, n), lower is better) no other column dominates."""
    d, n = costs.shape
    if n <= 1:
        return np.ones(n, dtype=bool)
    if d == 2:
        order = np.lexsort((np.arange(n), costs[1], costs[0]))
        ranked = costs[1, order]
        prefix_min = np.minimum.accumulate(ranked)
        keep_sorted = np.empty(n, dtype=bool)
        keep_sorted[0] = True
        keep_sorted[1:] = ranked[1:] < prefix_min[:-1]
        mask = np.empty(n, dtype=bool)
        mask[order] = keep_sorted
        return mask
    # no_worse[i, j]: column j is <= column i everywhere; better[i, j]: j < i somewhere.
    no_worse = (costs[:, None, :] <= costs[:, :, None]).all(axis=0)
    better = (costs[:, None, :] < costs[:, :, None]).any(axis=0)
    earlier = np.tri(n, k=-1, dtype=bool)
    dominated = no_worse & (better | earlier)
    return ~dominated.any(axis=1)


def _front_two_criteria(starts: np.ndarray, costs: np.ndarray) -> list[np.ndarray]:
    """``segment_pareto`` for two criteria, all segments at once on a padded (segments, width) grid."""
    sizes = np.diff(starts)
    n_seg, width = len(sizes), int(sizes.max())
    col = np.arange(width)
    valid = col[None, :] < sizes[:, None]
    flat = np.where(valid, starts[:-1, None] + col[None, :], 0)
    first = np.where(valid, costs[0, flat], np.inf)
    second = np.where(valid, costs[1, flat], np.inf)
    order = np.lexsort((np.broadcast_to(col, flat.shape), second, first), axis=-1)
    rows = np.arange(n_seg)[:, None]
    ranked = second[rows, order]
    keep_sorted = np.ones_like(valid)
    keep_sorted[:, 1:] = ranked[:, 1:] < np.minimum.accumulate(ranked, axis=1)[:, :-1]
    keep = np.zeros_like(valid)
    keep[rows, order] = keep_sorted
    keep &= valid
    return [np.flatnonzero(k) for k in keep]


def segment_pareto(starts: np.ndarray, costs: np.ndarray) -> list[np.ndarray]:
    """Per segment ``starts[i]:starts[i + 1]`` of the columns of ``costs`` (criteria, n), the positions
    within the segment (ascending) of its non-dominated columns."""
    if costs.shape[0] == 2 and len(starts) > 1 and starts[-1] > 0:
        return _front_two_criteria(starts, costs)
    return [np.flatnonzero(pareto_mask(costs[:, a:b])) for a, b in zip(starts[:-1].tolist(), starts[1:].tolist())]


def undominated(table: CostTable) -> list[np.ndarray]:
    """Per slot, the flat indices (ascending) of the candidates that survive dominance."""
    fronts = segment_pareto(table.starts, np.vstack([table.weights, table.score[None, :]]))
    return [front + start for front, start in zip(fronts, table.starts[:-1].tolist())]


def remove_dominated(problem: Problem) -> Problem:
    """The same problem with every slot's dominated candidates removed; the optimum is unchanged."""
    table = tabulate(problem)
    kept = undominated(table)
    slots = tuple(
        SlotChoices(slot.name, tuple(slot.candidates[i - int(table.starts[s])] for i in idx))
        for s, (slot, idx) in enumerate(zip(problem.slots, kept))
    )
    log.debug("dominance reduction kept %d of %d candidates", sum(map(len, kept)), len(table.score))
    return Problem(slots, problem.budget_ms, problem.fixed_latency_ms, problem.limits, problem.max_changed)


def min_latency_ms(problem: Problem) -> float:
    """The smallest achievable latency: fixed latency plus each slot's fastest candidate (exactly rounded
    sum); with ``max_changed`` K, only the K slots where the fastest candidate saves most leave "keep"."""
    return smallest_totals(tabulate(problem))[0]
