"""Lower bounds on the integer optimum: the Lagrangian relaxation of the knapsack rows.

For multipliers ``lam >= 0``, ``L(lam) = sum_s min_c (score_c + lam . w_c) - lam . caps`` is at most
the score of every feasible selection, whatever ``lam`` is, so a bound computed from imprecise
multipliers is still valid. Its best value equals the LP relaxation's optimum. With one row the
best multiplier is found by bisection on the row's usage; with several, from the duals of the LP
(OR-Tools GLOP). The reduced cost of a candidate, ``score_c + lam . w_c`` minus its slot's least such
value, is what forcing that candidate adds to the bound.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .dense import Dense

log = logging.getLogger(__name__)

_BISECTION_STEPS = 100


@dataclass(frozen=True)
class LagrangianBound:
    """A bound ``value`` (score units) at ``multipliers``, with every candidate's reduced cost."""

    multipliers: np.ndarray
    value: float
    reduced: np.ndarray
    """Shape (slots, width); +inf on padding."""


def lagrangian(d: Dense, multipliers: np.ndarray) -> LagrangianBound:
    """The Lagrangian bound and reduced costs at ``multipliers`` (clipped to >= 0)."""
    lam = np.maximum(np.asarray(multipliers, dtype=np.float64), 0.0)
    priced = d.score + np.einsum("r,rsm->sm", lam, d.weights)
    best = priced.min(axis=1)
    value = float(best.sum() - lam @ d.caps)
    return LagrangianBound(lam, value, priced - best[:, None])


def _cheapest(d: Dense, lam: float) -> tuple[np.ndarray, float]:
    """Per slot the column minimising score + lam * latency units, and the latency those picks use."""
    picks = (d.score + lam * d.weights[0]).argmin(axis=1)
    return picks, float(d.weights[0, np.arange(d.n_slots), picks].sum())


def _single_row(d: Dense) -> tuple[LagrangianBound, np.ndarray]:
    """Bisection for the one-row multiplier; also returns a selection that fits (the picks at the upper end)."""
    cap = float(d.caps[0])
    picks, used = _cheapest(d, 0.0)
    if used <= cap:
        return lagrangian(d, np.zeros(1)), picks
    finite = np.where(d.valid, d.score, np.nan)
    spread = float(np.nanmax(np.nanmax(finite, axis=1) - np.nanmin(finite, axis=1)))
    # Above the largest score spread, each slot's cheapest column has the least latency units: fits.
    lo, hi = 0.0, spread + 1.0
    hi_picks, _ = _cheapest(d, hi)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        mid_picks, used = _cheapest(d, mid)
        if used <= cap:
            hi, hi_picks = mid, mid_picks
        else:
            lo = mid
    at_lo, at_hi = lagrangian(d, np.array([lo])), lagrangian(d, np.array([hi]))
    return (at_hi if at_hi.value >= at_lo.value else at_lo), hi_picks


def _lp_multipliers(d: Dense) -> np.ndarray:
    """Row duals of the LP relaxation (GLOP), rows and objective normalised for its tolerances."""
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return np.zeros(len(d.caps))
    p_norm = max(1.0, float(np.max(d.score[d.valid])))
    r_norm = np.maximum(d.caps, 1.0)
    slots, cols = np.nonzero(d.valid)
    x = [solver.NumVar(0.0, 1.0, "") for _ in range(len(slots))]
    one = [solver.Constraint(1.0, 1.0) for _ in range(d.n_slots)]
    rows = [solver.Constraint(-solver.infinity(), float(d.caps[r] / r_norm[r])) for r in range(len(d.caps))]
    objective = solver.Objective()
    for v, s, c in zip(x, slots.tolist(), cols.tolist()):
        one[s].SetCoefficient(v, 1.0)
        for r, row in enumerate(rows):
            row.SetCoefficient(v, float(d.weights[r, s, c] / r_norm[r]))
        objective.SetCoefficient(v, float(d.score[s, c] / p_norm))
    objective.SetMinimization()
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return np.zeros(len(d.caps))
    duals = np.array([row.dual_value() for row in rows])
    return np.abs(duals) * p_norm / r_norm


def best_bound(d: Dense) -> tuple[LagrangianBound, np.ndarray | None]:
    """The strongest bound found cheaply, and a selection that fits when one came out of it."""
    if len(d.caps) == 1:
        return _single_row(d)
    single, _ = _single_row(Dense(d.weights[:1], d.score, d.valid, d.caps[:1]))
    candidates = [lagrangian(d, np.zeros(len(d.caps))), lagrangian(d, _lp_multipliers(d))]
    lam = np.zeros(len(d.caps))
    lam[0] = single.multipliers[0]
    candidates.append(lagrangian(d, lam))
    bound = max(candidates, key=lambda b: b.value)
    picks = (d.score + np.einsum("r,rsm->sm", bound.multipliers, d.weights)).argmin(axis=1)
    return bound, (picks if d.feasible(picks) else None)
