"""Turn a float problem into the integer knapsack the solvers see, conservatively on every row.

Each row (latency, each limited resource, the changed-slot count) is shifted per slot by the slot's
least value, so the selection of per-row minima costs 0 units. Values are scaled by a power of two
and rounded UP, exactly on the floats' rational values; the row's slack (limit - fixed - sum of the
per-slot minima) is rounded DOWN. Hence any selection within the integer capacities satisfies every
``fixed + sum <= limit`` exactly in the original floats. A row's slack spans up to 2**30 units, so
the rounding costs at most (number of slots) / 2**30 of the slack. Scores are shifted per slot,
scaled by a power of two and rounded to nearest, which is monotone: two scores may tie but never
swap order, and equal scores stay equal.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import SearchError
from .arrays import CostTable, tabulate
from .problem import Problem
from .reduce import segment_pareto

log = logging.getLogger(__name__)

DEFAULT_LATENCY_UNITS = 2**30
"""A row's slack is at most this many units (resolution = slack / 2**30)."""
DEFAULT_SCORE_UNITS = 2**30
"""The largest possible total of shifted scores is at most this many score units."""
_EXACT_LIMIT = 2.0**52
"""Below this magnitude every float64 with a fractional part is at least one ulp away from an integer."""


@dataclass(frozen=True)
class ScaledProblem:
    """Integer multiple-choice knapsack: one candidate per slot, each row's sum <= its cap, min sum(score)."""

    weights: tuple[np.ndarray, ...]
    """Per slot, shape (rows, kept candidates), int64 >= 0: units above the slot's least value per row."""
    score: tuple[np.ndarray, ...]
    """Per slot, per kept candidate: round((score - slot's least score) * score_scale), int64 >= 0."""
    caps: tuple[int, ...]
    """Per row: floor((limit - fixed - sum of per-slot minima) * row scale), >= 0."""
    index: tuple[np.ndarray, ...]
    """Per slot, per kept candidate: its position in the source problem's slot."""
    row_names: tuple[str, ...]
    row_scales: tuple[float, ...]
    """Per row: units per original unit (a power of two)."""
    score_scale: float
    """Score units per score point (a power of two)."""
    score_offset: float
    """Sum of the per-slot score shifts: float objective ~= score_offset + units / score_scale."""

    @property
    def latency(self) -> tuple[np.ndarray, ...]:
        """Per slot the latency units (row 0)."""
        return tuple(w[0] for w in self.weights)

    @property
    def budget(self) -> int:
        """Latency capacity in units (row 0)."""
        return self.caps[0]

    @property
    def lat_scale(self) -> float:
        return self.row_scales[0]

    @property
    def n_candidates(self) -> int:
        return sum(len(i) for i in self.index)

    def subset(self, keep: list[np.ndarray]) -> "ScaledProblem":
        """The same model with only the candidates ``keep[s]`` (boolean per kept candidate) of each slot."""
        return ScaledProblem(
            weights=tuple(w[:, k] for w, k in zip(self.weights, keep)),
            score=tuple(p[k] for p, k in zip(self.score, keep)),
            caps=self.caps,
            index=tuple(i[k] for i, k in zip(self.index, keep)),
            row_names=self.row_names,
            row_scales=self.row_scales,
            score_scale=self.score_scale,
            score_offset=self.score_offset,
        )


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


def _exact_ceil_units(values: np.ndarray, base: np.ndarray, exponent: int) -> np.ndarray | None:
    """``ceil((values - base) * 2**exponent)`` exactly, as float64 integers (values >= base); None if unsure.

    Scaling by a power of two is exact barring overflow and underflow (checked). The difference is
    split by TwoSum into its rounded value ``s`` and exact error ``e``; when ``s`` has a fractional part
    the error cannot cross an integer, and when ``s`` is an integer the sign of ``e`` decides.
    Results at or above 2**52 stand for "too large to fit" and are returned as 2**52.
    """
    a = np.ldexp(values, exponent)
    b = np.ldexp(base, exponent)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    if not (np.array_equal(np.ldexp(a, -exponent), values) and np.array_equal(np.ldexp(b, -exponent), base)):
        return None
    s = a - b
    back = s - a
    err = (a - (s - back)) + (-b - back)
    up = np.ceil(s)
    units = np.where(up == s, s + (err > 0), up)
    return np.where(s >= _EXACT_LIMIT, _EXACT_LIMIT, units)


def _row_units(values: np.ndarray, base: np.ndarray, scale: Fraction) -> np.ndarray:
    """Conservative units of one row: exact vectorised path, Fraction arithmetic when it declines."""
    exponent = scale.numerator.bit_length() - scale.denominator.bit_length()
    units = _exact_ceil_units(values, base, exponent)
    if units is not None:
        return units
    return np.array([_ceil((Fraction(v) - Fraction(b)) * scale) for v, b in zip(values.tolist(), base.tolist())],
                    dtype=np.float64)


def scale_table(
    table: CostTable,
    kept: list[np.ndarray],
    *,
    latency_units: int = DEFAULT_LATENCY_UNITS,
    score_units: int = DEFAULT_SCORE_UNITS,
) -> ScaledProblem:
    """Scale the candidates ``kept[s]`` (flat indices) of every slot to integers; those that cannot fit
    on some row are left out. Raises SearchError when a slot has no candidate within every capacity.

    A row's slack is clamped at 0: callers report an infeasible limit before a negative slack matters.
    """
    n_rows = len(table.row_names)
    flat = np.concatenate(kept)
    slot_of = np.repeat(np.arange(len(kept)), [len(k) for k in kept])
    firsts = np.concatenate([[0], np.cumsum([len(k) for k in kept])[:-1]]).astype(np.int64)

    units = np.empty((n_rows, len(flat)))
    caps, scales = [], []
    for r in range(n_rows):
        values = table.weights[r, flat]
        mins = np.minimum.reduceat(values, firsts)
        slack = Fraction(table.limits[r]) - Fraction(table.fixed[r]) - sum(map(Fraction, mins.tolist()), Fraction(0))
        slack = max(slack, Fraction(0))
        scale = _pow2_scale(slack, latency_units)
        caps.append(math.floor(slack * scale))
        scales.append(float(scale))
        units[r] = _row_units(values, mins[slot_of], scale)
    fits = (units <= np.array(caps, dtype=np.float64)[:, None]).all(axis=0)

    scores = table.score[flat]
    fit_scores = np.where(fits, scores, np.inf)
    shifts = np.minimum.reduceat(fit_scores, firsts)
    if not np.isfinite(shifts).all():
        raise SearchError(_no_fit_message(table, int(np.flatnonzero(~np.isfinite(shifts))[0])))
    highs = np.maximum.reduceat(np.where(fits, scores, -np.inf), firsts)
    spread = math.fsum((highs - shifts).tolist())
    score_scale = float(_pow2_scale(Fraction(spread), score_units))
    score_units_all = np.round((scores - shifts[slot_of]) * score_scale)

    # Rounding can tie two candidates; drop integer-dominated ones so ties resolve to the cheaper.
    ok = np.flatnonzero(fits)
    ok_starts = np.concatenate([[0], np.cumsum(np.add.reduceat(fits.astype(np.int64), firsts))])
    fronts = segment_pareto(ok_starts, np.vstack([units[:, ok], score_units_all[None, ok]]))
    weights, score, index = [], [], []
    for s, front in enumerate(fronts):
        pick = ok[front + ok_starts[s]]
        weights.append(units[:, pick].astype(np.int64))
        score.append(score_units_all[pick].astype(np.int64))
        index.append((flat[pick] - table.starts[s]).astype(np.int64))

    scaled = ScaledProblem(
        weights=tuple(weights),
        score=tuple(score),
        caps=tuple(int(c) for c in caps),
        index=tuple(index),
        row_names=table.row_names,
        row_scales=tuple(scales),
        score_scale=score_scale,
        score_offset=math.fsum(shifts.tolist()),
    )
    log.debug(
        "integer model: %d candidates, caps %s units, %s units/unit, %g units/score",
        scaled.n_candidates, scaled.caps, scaled.row_scales, score_scale,
    )
    return scaled


def _no_fit_message(table: CostTable, slot: int) -> str:
    rows = ", ".join(table.row_names)
    return (
        f"no candidate of slot {table.slot_names[slot]!r} fits within all limits ({rows}) at once, so no selection satisfies "
        "them together; relax one of the limits"
    )


def integerize(
    problem: Problem,
    *,
    latency_units: int = DEFAULT_LATENCY_UNITS,
    score_units: int = DEFAULT_SCORE_UNITS,
) -> ScaledProblem:
    """Scale every candidate of ``problem`` to integers (see ``scale_table``)."""
    table = tabulate(problem)
    kept = [np.arange(table.slot(s).start, table.slot(s).stop) for s in range(table.n_slots)]
    return scale_table(table, kept, latency_units=latency_units, score_units=score_units)
