"""A validated Problem as arrays: one knapsack row per constraint over all candidates, slot after slot.

Row 0 is latency (limit ``budget_ms``); then one row per ResourceLimit; then, with ``max_changed``,
a row counting changed slots (1 for every candidate but a slot's first, limit K).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .problem import CHANGED, LATENCY, Problem
from .validate import checked_columns


@dataclass(frozen=True)
class CostTable:
    """Per-candidate costs of a problem: ``weights[r, i]`` of candidate ``i`` on row ``r``, and its score."""

    starts: np.ndarray
    """Shape (slots + 1,): slot ``s`` owns candidates ``starts[s]:starts[s + 1]`` (in problem order)."""
    score: np.ndarray
    weights: np.ndarray
    """Shape (rows, candidates), float64."""
    fixed: tuple[float, ...]
    """Per row: the amount outside the slots (fixed latency, a limit's ``fixed``, 0 changed slots)."""
    limits: tuple[float, ...]
    """Per row: the most the row may total, fixed part included."""
    row_names: tuple[str, ...]
    slot_names: tuple[str, ...]

    @property
    def n_slots(self) -> int:
        return len(self.starts) - 1

    def slot(self, s: int) -> slice:
        return slice(int(self.starts[s]), int(self.starts[s + 1]))


def tabulate(problem: Problem) -> CostTable:
    """Validate ``problem`` (SearchError naming the first malformed field) and lay out its costs."""
    cols = checked_columns(problem)
    starts = np.concatenate([[0], np.cumsum(cols.sizes)]).astype(np.int64)
    rows = [cols.latency, *cols.resources]
    fixed = [float(problem.fixed_latency_ms), *(float(lim.fixed) for lim in problem.limits)]
    limits = [float(problem.budget_ms), *(float(lim.limit) for lim in problem.limits)]
    names = [LATENCY, *(lim.name for lim in problem.limits)]
    if problem.max_changed is not None:
        changed = np.ones(len(cols.latency))
        changed[starts[:-1]] = 0.0
        rows.append(changed)
        fixed.append(0.0)
        limits.append(float(problem.max_changed))
        names.append(CHANGED)
    slot_names = tuple(slot.name for slot in problem.slots)
    return CostTable(starts, cols.score, np.vstack(rows), tuple(fixed), tuple(limits), tuple(names), slot_names)


def selection_totals(table: CostTable, picks: np.ndarray) -> tuple[list[float], float]:
    """Per row the correctly rounded total (fixed part included) of a selection, and its total score.

    ``picks`` are flat candidate indices, one per slot.
    """
    totals = [math.fsum([table.fixed[r], *table.weights[r, picks].tolist()]) for r in range(len(table.row_names))]
    return totals, math.fsum(table.score[picks].tolist())


def smallest_totals(table: CostTable) -> list[float]:
    """Per row the least total any selection reaches on that row alone (the changed-slot limit respected).

    With a changed-slot limit K, a slot can leave its first candidate in at most K slots, so the least
    total keeps the first candidate everywhere but in the K slots where leaving it saves the most.
    """
    firsts = table.starts[:-1]
    changed_row = table.row_names.index(CHANGED) if CHANGED in table.row_names else None
    out = []
    for r in range(len(table.row_names)):
        mins = np.minimum.reduceat(table.weights[r], firsts)
        if changed_row is None or r == changed_row:
            out.append(math.fsum([table.fixed[r], *mins.tolist()]))
            continue
        first = table.weights[r, firsts]
        k = int(table.limits[changed_row])
        best = first.copy()
        leave = np.argsort(-(first - mins), kind="stable")[:k]
        best[leave] = mins[leave]
        out.append(math.fsum([table.fixed[r], *best.tolist()]))
    return out
