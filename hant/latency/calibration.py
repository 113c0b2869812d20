"""Linear correction from summed block latencies to whole-network latency, with its leave-one-out error.

Blocks timed alone do not add up exactly to the network they form (each block is timed with its
input hot in cache and its own allocations recycled; in the network it inherits its neighbour's
memory state), and the bias grows with the batch size. A few whole networks measured end to end
give points (predicted, measured); ``measured ≈ scale · predicted + offset`` is fitted to them by
least squares on relative error, and its leave-one-out error says how far a new network's
prediction can be trusted.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import LatencyError

MIN_POINTS_FOR_LINE = 4
"""Fewer points fit only a ratio (offset 0): two free parameters on three points would follow the noise."""


@dataclass(frozen=True)
class Calibration:
    """``measured ≈ scale · predicted + offset_ms``, fitted on whole networks measured end to end."""

    scale: float = 1.0
    offset_ms: float = 0.0
    predicted_ms: tuple[float, ...] = ()
    """The uncorrected predictions (outside-slot part plus summed blocks) of the calibration networks."""
    measured_ms: tuple[float, ...] = ()
    """Their end-to-end medians, in the same order."""
    loo_errors_pct: tuple[float, ...] = field(default=())
    """Signed leave-one-out error of each point, in percent of its measured latency."""

    def apply(self, predicted_ms: float) -> float:
        """The corrected whole-network latency of an uncorrected prediction."""
        return self.scale * predicted_ms + self.offset_ms

    @property
    def loo_median_abs_err_pct(self) -> float | None:
        """Median absolute leave-one-out error in percent (None without points)."""
        return statistics.median(abs(e) for e in self.loo_errors_pct) if self.loo_errors_pct else None

    @property
    def loo_max_abs_err_pct(self) -> float | None:
        """Largest absolute leave-one-out error in percent (None without points)."""
        return max(abs(e) for e in self.loo_errors_pct) if self.loo_errors_pct else None

    @property
    def raw_errors_pct(self) -> tuple[float, ...]:
        """Signed error of the uncorrected predictions, in percent (the bias the fit removes)."""
        return tuple(100.0 * (p - m) / m for p, m in zip(self.predicted_ms, self.measured_ms))

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "offset_ms": self.offset_ms,
            "predicted_ms": list(self.predicted_ms),
            "measured_ms": list(self.measured_ms),
            "loo_errors_pct": list(self.loo_errors_pct),
            "loo_median_abs_err_pct": self.loo_median_abs_err_pct,
            "loo_max_abs_err_pct": self.loo_max_abs_err_pct,
            "raw_errors_pct": list(self.raw_errors_pct),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibration":
        try:
            return cls(
                float(d["scale"]),
                float(d["offset_ms"]),
                tuple(float(x) for x in d.get("predicted_ms", ())),
                tuple(float(x) for x in d.get("measured_ms", ())),
                tuple(float(x) for x in d.get("loo_errors_pct", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise LatencyError(f"the latency table's calibration is malformed ({e!r}); re-run `hant profile`") from None


def _fit(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(scale, offset) minimising the summed squared relative error; a ratio alone for few points
    or when the line would be degenerate (predictions too alike, or a non-positive scale)."""
    w = [1.0 / (m * m) for m in measured]
    ratio = sum(wi * p * m for wi, p, m in zip(w, predicted, measured)) / sum(wi * p * p for wi, p in zip(w, predicted))
    if len(predicted) < MIN_POINTS_FOR_LINE:
        return ratio, 0.0
    sw = sum(w)
    mp = sum(wi * p for wi, p in zip(w, predicted)) / sw
    mm = sum(wi * m for wi, m in zip(w, measured)) / sw
    var = sum(wi * (p - mp) ** 2 for wi, p in zip(w, predicted)) / sw
    if var <= (0.05 * mp) ** 2:
        return ratio, 0.0
    scale = sum(wi * (p - mp) * (m - mm) for wi, p, m in zip(w, predicted, measured)) / sw / var
    if scale <= 0.0:
        return ratio, 0.0
    return scale, mm - scale * mp


def fit_calibration(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> Calibration:
    """Fit the correction on (uncorrected prediction, measured) pairs of whole networks.

    Needs at least two networks; from four on, an offset is fitted besides the scale.
    """
    if len(predicted_ms) != len(measured_ms):
        raise LatencyError("calibration needs as many measured as predicted latencies")
    if len(predicted_ms) < 2:
        raise LatencyError(f"calibration needs at least 2 measured networks, got {len(predicted_ms)}")
    if any(not (x > 0.0 and math.isfinite(x)) for x in [*predicted_ms, *measured_ms]):
        raise LatencyError("calibration latencies must be positive and finite")
    scale, offset = _fit(predicted_ms, measured_ms)
    loo = []
    for i, (p, m) in enumerate(zip(predicted_ms, measured_ms)):
        rest_p = [x for j, x in enumerate(predicted_ms) if j != i]
        rest_m = [x for j, x in enumerate(measured_ms) if j != i]
        s, o = _fit(rest_p, rest_m)
        loo.append(100.0 * (s * p + o - m) / m)
    return Calibration(scale, offset, tuple(map(float, predicted_ms)), tuple(map(float, measured_ms)), tuple(loo))
