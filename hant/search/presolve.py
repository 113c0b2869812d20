"""Exact presolve of the integer model: LP bound, incumbent, and reduced-cost fixing.

With a fitting selection of score ``U`` (the incumbent) and the Lagrangian bound ``z``, a candidate
whose reduced cost ``r`` gives ``z + r > U`` is in no selection scoring ``<= U``, so in no optimal
one, and is removed; the incumbent's own candidates always stay. The bound holds for any
multipliers and is compared with half a unit of slack (the objective is an integer), so float
round-off cannot remove an optimal candidate. A bounded dynamic program over the survivors then
looks for a better incumbent, fixing again after each improvement; when it runs without hitting
its width cap it has also proven the incumbent optimal. The backend solves what is left, started
from the incumbent.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .bounds import best_bound
from .dense import Dense
from .incumbent import beam_search, bound_slack, greedy_fill
from .scaling import ScaledProblem

log = logging.getLogger(__name__)

BEAM_WIDTHS = (64, 512, 4096)
"""Widths of the successive dynamic-program passes; each pass starts from the last one's incumbent."""


@dataclass(frozen=True)
class Presolved:
    """The reduced model, a starting selection in it, and what the presolve proved."""

    model: ScaledProblem
    hint: tuple[int, ...] | None
    """The incumbent as positions within the reduced model's rows; None when no fitting selection was found."""
    incumbent: float
    """The incumbent's score units (inf without one)."""
    lower_bound: float
    """The LP (Lagrangian) lower bound on the full model's optimum, rounded up to whole score units."""
    proven: bool
    """The dynamic program was exhaustive: the incumbent is optimal (or, without one, nothing fits)."""
    stats: dict = field(default_factory=dict)


def _positions(keep: np.ndarray, picks: np.ndarray) -> tuple[int, ...]:
    """Positions of ``picks`` among each slot's kept columns."""
    before = np.cumsum(keep, axis=1) - 1
    return tuple(int(v) for v in before[np.arange(len(picks)), picks])


def _keep_mask(d: Dense, reduced: np.ndarray, bound: float, upper: float, picks: np.ndarray | None) -> np.ndarray:
    keep = d.valid.copy()
    if np.isfinite(upper):
        keep &= bound + reduced <= upper + bound_slack(upper)
    if picks is not None:
        keep[np.arange(d.n_slots), picks] = True
    return keep


def presolve(model: ScaledProblem, *, start: np.ndarray | None = None, fixing: bool = True) -> Presolved:
    """Bound, find an incumbent (``start`` is tried too), and remove candidates that cannot be optimal."""
    d = Dense.from_model(model)
    bound, picks = best_bound(d)
    if picks is not None:
        picks = greedy_fill(d, picks)
    upper = d.totals(picks)[1] if picks is not None else math.inf
    if start is not None and d.feasible(start):
        start = greedy_fill(d, start)
        if d.totals(start)[1] < upper:
            picks, upper = start, d.totals(start)[1]
    stats: dict = {"lp_bound_units": bound.value, "first_incumbent_units": upper if np.isfinite(upper) else None}

    keep, proven, passes = d.valid, False, 0
    if fixing:
        keep = _keep_mask(d, bound.reduced, bound.value, upper, picks)
        stats["candidates_after_first_fixing"] = int(keep.sum())
        for width in BEAM_WIDTHS:
            passes += 1
            found = beam_search(d, keep, bound.reduced, bound.value, upper, width)
            if found.picks is not None and found.score < upper:
                picks, upper = found.picks, found.score
                keep = _keep_mask(d, bound.reduced, bound.value, upper, picks)
            if found.exhaustive:
                proven = True
                break
    stats.update(beam_passes=passes, candidates_after_fixing=int(keep.sum()) if fixing else model.n_candidates)

    lower = max(0.0, float(math.ceil(bound.value - bound_slack(bound.value))))
    reduced_model = model.subset([keep[s, : len(p)] for s, p in enumerate(model.score)]) if fixing else model
    hint = _positions(keep, picks) if picks is not None else None
    log.debug("presolve: bound %.6g, incumbent %.6g, %d of %d candidates left, proven %s",
              bound.value, upper, int(keep.sum()), int(d.valid.sum()), proven)
    return Presolved(reduced_model, hint, float(upper), float(lower), proven, stats)
