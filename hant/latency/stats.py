"""LatencyStat and the order statistics behind it: quartiles and a distribution-free CI of the median."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

from ..errors import LatencyError


@dataclass(frozen=True)
class LatencyStat:
    """Summary of repeated timings of one module, in milliseconds per forward call."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    reps: int
    """Number of timed samples (each sample averages several calls)."""

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "q1_ms": self.q1_ms, "q3_ms": self.q3_ms, "reps": self.reps}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LatencyStat":
        """Inverse of :meth:`to_dict`; unknown keys are ignored so newer files still load."""
        try:
            return cls(float(d["median_ms"]), float(d["q1_ms"]), float(d["q3_ms"]), int(d["reps"]))
        except (KeyError, TypeError, ValueError) as e:
            raise LatencyError(
                f"a latency entry is malformed ({e!r} in {dict(d)!r}); re-run `hant profile` to measure it again"
            ) from None

    @classmethod
    def of_samples(cls, samples_ms: Sequence[float]) -> "LatencyStat":
        """Median and quartiles of a non-empty list of per-call times."""
        xs = sorted(samples_ms)
        if not xs:
            raise ValueError("no samples")
        return cls(quantile(xs, 0.5), quantile(xs, 0.25), quantile(xs, 0.75), len(xs))


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Quantile of already sorted data by linear interpolation between order statistics."""
    n = len(sorted_xs)
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of order statistics bracketing the median with at least ``confidence``.

    Distribution-free: P(X_(k) <= median <= X_(n-k+1)) = 1 - 2 P(Bin(n, 1/2) <= k-1); the largest
    such k is used. Returns None when ``n`` is too small for any interval at that confidence.
    """
    alpha = 1.0 - confidence
    log_half_n = n * math.log(0.5)
    log_n_fact = math.lgamma(n + 1)
    cdf = 0.0
    k = 0
    for i in range(n // 2 + 1):
        cdf += math.exp(log_n_fact - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)
        if 2.0 * cdf > alpha * (1.0 + 1e-12):
            break
        k = i + 1
    if k == 0:
        return None
    return k - 1, n - k


def relative_ci_halfwidth(sorted_xs: Sequence[float], confidence: float = 0.95) -> float:
    """Largest distance from the median to an end of its confidence interval, relative to the median.

    ``inf`` when there are too few samples for an interval.
    """
    ranks = median_ci_ranks(len(sorted_xs), confidence)
    if ranks is None:
        return math.inf
    med = quantile(sorted_xs, 0.5)
    lo, hi = sorted_xs[ranks[0]], sorted_xs[ranks[1]]
    spread = max(med - lo, hi - med)
    if med <= 0.0:
        return 0.0 if spread == 0.0 else math.inf
    return spread / med
