"""Good selections fast: a greedy fill of the slack, and a bounded dynamic program over the slots.

The dynamic program builds partial selections slot by slot. A partial selection is dropped when
it cannot be completed within the capacities, when the Lagrangian bound plus its reduced costs
exceeds the best score known, or (one row only) when another partial selection uses no more units
for no more score. Those rules are exact; only the width cap is a heuristic: it keeps half the
partial selections by least reduced cost and half spread over the latency used. A run that never hit the cap is exhaustive: its best
selection is optimal, or, when it finds none, nothing beats the upper bound it was given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dense import Dense


def bound_slack(upper: float) -> float:
    """Float round-off allowance when comparing bounds with an integer objective (half a unit, at least)."""
    return 0.5 + 1e-9 * abs(upper)


def greedy_fill(d: Dense, picks: np.ndarray) -> np.ndarray:
    """Improve a fitting selection by the best single-slot change that still fits, until none helps."""
    picks = picks.copy()
    rows = np.arange(d.n_slots)
    for _ in range(4 * d.n_slots):
        used, _ = d.totals(picks)
        room = d.caps - used
        grow = d.weights - d.weights[:, rows, picks][:, :, None]
        gain = d.score - d.score[rows, picks][:, None]
        ok = d.valid & (gain < 0) & (grow <= room[:, None, None]).all(axis=0)
        if not ok.any():
            break
        s, c = np.unravel_index(np.argmin(np.where(ok, gain, np.inf)), gain.shape)
        picks[s] = c
    return picks


def _survivors(reduced: np.ndarray, units: np.ndarray, width: int) -> np.ndarray:
    """Positions (ascending) of the ``width`` partial selections to keep: half with the least reduced
    cost, half spread evenly over the latency units used, so that tight and loose ones both go on."""
    half = width // 2
    by_cost = np.argpartition(reduced, half)
    best, others = by_cost[:half], by_cost[half:]
    ranks = np.unique(np.linspace(0, len(others) - 1, width - half).round().astype(np.int64))
    spread = others[np.argpartition(units[others], ranks)[ranks]]
    return np.unique(np.concatenate([best, spread]))


@dataclass(frozen=True)
class BeamResult:
    picks: np.ndarray | None
    """The best selection found below the upper bound (one column per slot), if any."""
    score: float
    exhaustive: bool
    """True when the width cap never bound: the search then proves its answer (or that none exists)."""


def beam_search(
    d: Dense, keep: np.ndarray, reduced: np.ndarray, bound: float, upper: float, width: int
) -> BeamResult:
    """Best selection among ``keep`` scoring below ``upper`` (units), keeping at most ``width`` partial ones."""
    n_rows = len(d.caps)
    slack = bound_slack(upper) if np.isfinite(upper) else np.inf
    counts = keep.sum(axis=1)
    if (counts == 0).any():
        return BeamResult(None, np.inf, True)
    picks = keep.argmax(axis=1).astype(np.int64)
    single = np.flatnonzero(counts == 1)
    multi = np.flatnonzero(counts > 1)
    order = multi[np.argsort(counts[multi], kind="stable")].tolist()
    cols = {s: np.flatnonzero(keep[s]) for s in order}
    least = np.array([d.weights[:, s, cols[s]].min(axis=1) for s in order]).reshape(-1, n_rows).T
    rest = np.concatenate([np.cumsum(least[:, ::-1], axis=1)[:, ::-1], np.zeros((n_rows, 1))], axis=1)

    used = d.weights[:, single, picks[single]].sum(axis=1)[:, None]
    score = np.array([d.score[single, picks[single]].sum()])
    red = np.array([reduced[single, picks[single]].sum()])
    trail: list[tuple[int, np.ndarray, np.ndarray]] = []
    exhaustive = True
    if not ((used[:, 0] + rest[:, 0] <= d.caps).all() and bound + red[0] <= upper + slack):
        return BeamResult(None, np.inf, exhaustive)
    for pos, s in enumerate(order):
        c = cols[s]
        # Prune on the bound and on what the remaining slots need at least, before materialising.
        r_all = red[:, None] + reduced[s, c][None, :]
        w_all = used[:, :, None] + d.weights[:, s, c][:, None, :]
        ok = (bound + r_all <= upper + slack) & (w_all + rest[:, pos + 1, None, None] <= d.caps[:, None, None]).all(axis=0)
        parent, pick = np.nonzero(ok)
        if len(parent) == 0:
            return BeamResult(None, np.inf, exhaustive)
        w, r = w_all[:, parent, pick], r_all[parent, pick]
        p = score[parent] + d.score[s, c[pick]]
        if n_rows == 1:
            idx = np.lexsort((p, w[0]))
            front = np.ones(len(idx), dtype=bool)
            front[1:] = p[idx][1:] < np.minimum.accumulate(p[idx])[:-1]
            idx = np.sort(idx[front])
        else:
            idx = np.arange(len(p))
        if len(idx) > width:
            exhaustive = False
            idx = idx[_survivors(r[idx], w[0, idx], width)]
        used, score, red = w[:, idx], p[idx], r[idx]
        trail.append((s, parent[idx], c[pick[idx]]))

    best = int(np.lexsort((*used[::-1], score))[0])
    state = best
    for s, parent, choice in reversed(trail):
        picks[s] = choice[state]
        state = parent[state]
    return BeamResult(picks, float(score[best]), exhaustive)
