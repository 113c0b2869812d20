"""Synthetic selection problems for tests and benchmarks (seeded, so every run builds the same ones).

Each slot's first candidate is "keep" (score 0, the slot's reference latency). The budget is placed
at ``fraction`` of the way from the fastest selection to the all-keep one, so it is always feasible.
"""
from __future__ import annotations

import math
import random

from hant.search import CandidateCost, Problem, SlotChoices


def _with_budget(slots: list[SlotChoices], fraction: float, fixed: float) -> Problem:
    lo = math.fsum(min(c.latency_ms for c in s.candidates) for s in slots)
    hi = math.fsum(s.candidates[0].latency_ms for s in slots)
    return Problem(tuple(slots), budget_ms=fixed + lo + fraction * (hi - lo), fixed_latency_ms=fixed)


def realistic(n_slots: int, n_cands: int, *, seed: int, fraction: float = 0.5, noise: float = 0.15) -> Problem:
    """Score falls as latency rises, with multiplicative noise: a candidate at ``u`` times the keep latency
    scores ``a * (1.1 - u)**p * exp(N(0, noise))``, with slot-specific sensitivity ``a`` and shape ``p``."""
    rng = random.Random(seed)
    slots = []
    for s in range(n_slots):
        keep = rng.uniform(0.5, 3.0)
        a, p = rng.uniform(0.2, 2.0), rng.uniform(1.0, 3.0)
        cands = [CandidateCost("keep", keep, 0.0)]
        for c in range(1, n_cands):
            u = rng.uniform(0.05, 1.1)
            cands.append(CandidateCost(f"c{c}", keep * u, a * max(0.0, 1.1 - u) ** p * math.exp(rng.gauss(0.0, noise))))
        slots.append(SlotChoices(f"slot{s}", tuple(cands)))
    return _with_budget(slots, fraction, fixed=0.5)


def uniform(n_slots: int, n_cands: int, *, seed: int, fraction: float = 0.5) -> Problem:
    """Latency uniform in 5-120 % of the keep latency and score uniform in [0, 1], independently."""
    rng = random.Random(seed)
    slots = []
    for s in range(n_slots):
        keep = rng.uniform(0.5, 3.0)
        cands = [CandidateCost("keep", keep, 0.0)]
        cands += [CandidateCost(f"c{c}", keep * rng.uniform(0.05, 1.2), rng.uniform(0.0, 1.0)) for c in range(1, n_cands)]
        slots.append(SlotChoices(f"slot{s}", tuple(cands)))
    return _with_budget(slots, fraction, fixed=0.5)


def pruning(n_layers: int, *, seed: int, fraction: float = 0.5, group: int = 32) -> Problem:
    """Channel pruning only (HALP, SP-LAMP): a layer keeps ``k`` of its ``C`` channels, every ``k`` a candidate.

    Latency is a staircase in ``k`` (hardware works in groups of ``group`` channels), so most widths are
    dominated by the widest one of their step; the score is the summed importance of the removed
    channels (log-normal importances, least important removed first), scaled by a layer sensitivity.
    Candidates carry ``params`` and ``flops`` resources, proportional to ``k``.
    """
    rng = random.Random(seed)
    slots = []
    for s in range(n_layers):
        channels = rng.choice([64, 128, 256, 512])
        fan_in = rng.choice([64, 128, 256, 512]) * 9
        ms_per_group = rng.uniform(0.01, 0.06) * fan_in / 1152
        overhead = rng.uniform(0.02, 0.1)
        importance = sorted(rng.lognormvariate(0.0, 1.0) for _ in range(channels))
        total = sum(importance)
        sensitivity = rng.uniform(0.1, 2.0)
        pixels = rng.choice([49, 196, 784, 3136])
        removed = [0.0]
        for value in importance:
            removed.append(removed[-1] + value)
        cands = []
        for k in range(channels, 0, -1):
            latency = overhead + ms_per_group * math.ceil(k / group) * (1 + rng.uniform(-0.01, 0.01))
            params = float(k * fan_in)
            cands.append(
                CandidateCost(
                    "keep" if k == channels else f"w{k}",
                    latency,
                    sensitivity * removed[channels - k] / total,
                    {"params": params, "flops": params * pixels},
                )
            )
        slots.append(SlotChoices(f"layer{s}", tuple(cands)))
    return _with_budget(slots, fraction, fixed=1.0)
