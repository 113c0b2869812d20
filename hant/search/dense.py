"""A ScaledProblem padded to a (slots x width) grid, so bounds and searches run as numpy array operations.

Integer units are held as float64, exact for the sums involved (every row and the objective stay
below 2**53). Padding costs +inf score and 0 weight, so it is never the cheapest choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scaling import ScaledProblem


@dataclass(frozen=True)
class Dense:
    """Weights (rows, slots, width), scores (slots, width), a validity mask and the row capacities."""

    weights: np.ndarray
    score: np.ndarray
    valid: np.ndarray
    caps: np.ndarray

    @classmethod
    def from_model(cls, model: ScaledProblem) -> "Dense":
        n_rows, n_slots = len(model.caps), len(model.score)
        width = max(len(p) for p in model.score)
        weights = np.zeros((n_rows, n_slots, width))
        score = np.full((n_slots, width), np.inf)
        valid = np.zeros((n_slots, width), dtype=bool)
        for s, (w, p) in enumerate(zip(model.weights, model.score)):
            weights[:, s, : len(p)] = w
            score[s, : len(p)] = p
            valid[s, : len(p)] = True
        return cls(weights, score, valid, np.asarray(model.caps, dtype=np.float64))

    @property
    def n_slots(self) -> int:
        return self.score.shape[0]

    def totals(self, picks: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-row usage and score (units) of a selection given as one column per slot."""
        rows = np.arange(self.n_slots)
        return self.weights[:, rows, picks].sum(axis=1), float(self.score[rows, picks].sum())

    def feasible(self, picks: np.ndarray) -> bool:
        used, _ = self.totals(picks)
        return bool(self.valid[np.arange(self.n_slots), picks].all() and (used <= self.caps).all())
