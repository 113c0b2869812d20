"""Turn a float Problem into the integer knapsack the solvers see, conservatively for latency.

Each slot is shifted by its fastest latency (and its lowest score) so that the all-fastest selection
costs 0 units and is always feasible. Latencies are scaled by a power of two ``lat_scale`` and rounded
UP, computed exactly on the floats' rational values; the budget slack is rounded DOWN. Hence any
selection within the integer budget satisfies ``fixed + sum(latency) <= budget`` exactly in the original
floats. Scores are scaled by a power of two and rounded to nearest, which is monotone: an order of two
scores can become a tie but never flips, and equal scores stay equal.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction

from .problem import Problem
from .reduce import pareto_indices

log = logging.getLogger(__name__)

DEFAULT_LATENCY_UNITS = 2**20
"""The budget slack is at most this many latency units (resolution = slack / 2**20)."""
DEFAULT_SCORE_UNITS = 2**30
"""The largest possible total of shifted scores is at most this many score units."""


@dataclass(frozen=True)
class ScaledProblem:
    """Integer multiple-choice knapsack: pick one candidate per slot, sum(latency) <= budget, min sum(score)."""

    latency: tuple[tuple[int, ...], ...]
    """Per slot, per kept candidate: ceil((latency - slot's fastest latency) * lat_scale), >= 0."""
    score: tuple[tuple[int, ...], ...]
    """Per slot, per kept candidate: round((score - slot's lowest kept score) * score_scale), >= 0."""
    budget: int
    """floor((budget - fixed - sum of fastest latencies) * lat_scale), >= 0."""
    index: tuple[tuple[int, ...], ...]
    """Per slot, per kept candidate: its position in the source problem's slot."""
    lat_scale: float
    """Latency units per millisecond (a power of two)."""
    score_scale: float
    """Score units per score point (a power of two)."""
    score_offset: float
    """Sum of the per-slot score shifts: float objective ~= score_offset + units / score_scale."""


def _pow2_scale(magnitude: Fraction, units: int) -> Fraction:
    """The largest power of two ``p`` with ``magnitude * p <= units`` (1 when magnitude is 0)."""
    if magnitude <= 0:
        return Fraction(1)
    exponent = math.floor(math.log2(units)) - math.frexp(float(magnitude))[1]
    scale = Fraction(2) ** exponent
    while magnitude * scale > units:
        scale /= 2
    while magnitude * scale * 2 <= units:
        scale *= 2
    return scale


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def integerize(
    problem: Problem,
    *,
    latency_units: int = DEFAULT_LATENCY_UNITS,
    score_units: int = DEFAULT_SCORE_UNITS,
) -> ScaledProblem:
    """Scale ``problem`` to integers (latency conservatively); candidates that cannot fit are left out.

    The budget slack is clamped at 0: callers raise InfeasibleBudgetError before a negative slack matters.
    """
    fastest = [min(Fraction(c.latency_ms) for c in slot.candidates) for slot in problem.slots]
    slack = Fraction(problem.budget_ms) - Fraction(problem.fixed_latency_ms) - sum(fastest, Fraction(0))
    slack = max(slack, Fraction(0))
    lat_scale = _pow2_scale(slack, latency_units)
    budget = math.floor(slack * lat_scale)

    lat_rows: list[list[int]] = []
    idx_rows: list[list[int]] = []
    for slot, base in zip(problem.slots, fastest):
        lats = [_ceil((Fraction(c.latency_ms) - base) * lat_scale) for c in slot.candidates]
        fits = [i for i, lat in enumerate(lats) if lat <= budget]
        lat_rows.append([lats[i] for i in fits])
        idx_rows.append(fits)

    shifts = [min(problem.slots[s].candidates[i].score for i in idx_rows[s]) for s in range(len(idx_rows))]
    spread = math.fsum(
        max(problem.slots[s].candidates[i].score for i in idx_rows[s]) - shifts[s] for s in range(len(idx_rows))
    )
    score_scale = float(_pow2_scale(Fraction(spread), score_units))

    latency, score, index = [], [], []
    for s, slot in enumerate(problem.slots):
        units = [round((slot.candidates[i].score - shifts[s]) * score_scale) for i in idx_rows[s]]
        # Rounding can tie two scores; drop the slower of integer-dominated pairs so ties resolve to speed.
        keep = pareto_indices(list(zip(lat_rows[s], units)))
        latency.append(tuple(lat_rows[s][k] for k in keep))
        score.append(tuple(units[k] for k in keep))
        index.append(tuple(idx_rows[s][k] for k in keep))

    scaled = ScaledProblem(
        latency=tuple(latency),
        score=tuple(score),
        budget=budget,
        index=tuple(index),
        lat_scale=float(lat_scale),
        score_scale=score_scale,
        score_offset=math.fsum(shifts),
    )
    log.debug(
        "integer model: %d candidates, budget %d units, %g units/ms, %g units/score",
        sum(len(r) for r in index), budget, scaled.lat_scale, score_scale,
    )
    return scaled
