"""SP-LAMP: LAMP scores lifted to filters, one global threshold, under a latency budget.

Every channel of every prunable group has a LAMP score on its filter norms, normalised within its
layer (:func:`~hant.pruning.importance.lamp_filter_scores`), so one threshold serves all layers.
Channels scoring at or below the threshold go, rounded up to the width grid (the neuron groups) and
never below one group per layer; a slot's inner groups share the widest of their widths. The
threshold is the lowest whose network fits the budget in the latency lookup table (bisection over
the sorted scores: a higher threshold never makes a network slower).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .space import PruneSpace

__all__ = ["splamp_counts"]


def _counts_at(space: PruneSpace, scores: Mapping[str, torch.Tensor], tau: float) -> dict[str, int]:
    need = {g: int((scores[g] > tau).sum()) for g in space.full_counts()}
    index = {}
    for g, n in need.items():
        opts = space.options(g)
        fits = [j for j in opts if space.count(g, j) >= n]
        index[g] = fits[-1] if fits else opts[0]
    for slot in space.slots:
        inner = space.inner(slot)
        if inner:
            widest = min(index[g] for g in inner)
            for g in inner:
                index[g] = widest
    return {g: space.count(g, j) for g, j in index.items()}


def splamp_counts(space: PruneSpace, scores: Mapping[str, torch.Tensor], budget_ms: float) -> dict[str, int]:
    """Channels each group keeps: the least pruning by global LAMP threshold that fits ``budget_ms``."""
    levels = torch.unique(torch.cat([scores[g] for g in space.full_counts()])).tolist()
    lo, hi = -1, len(levels) - 1  # threshold below every score keeps all; the top level prunes most
    if space.predict_ms(_counts_at(space, scores, levels[hi])) > budget_ms:
        return _counts_at(space, scores, levels[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if space.predict_ms(_counts_at(space, scores, levels[mid])) <= budget_ms:
            hi = mid
        else:
            lo = mid
    return _counts_at(space, scores, levels[hi])
