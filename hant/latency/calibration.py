"""Linear correction from summed block latencies to whole-network latency, with its leave-one-out error.

Blocks timed alone do not add up exactly to the network they form: with the allocator kept from
returning memory (see :mod:`.allocator`) the rest is cache and memory-bandwidth state, which a
block timed alone with a hot input does not share with its neighbours in the network, and the
load of a shared machine, which differs between runs. A few whole networks measured end to end
give points (predicted, measured); ``measured ≈ scale · predicted + offset`` is fitted to them by
least squares on relative error (or only the scale, or nothing, whichever predicts held-out points
best), and its leave-one-out error says how far a new network's prediction can be trusted.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import LatencyError

MIN_POINTS_FOR_LINE = 4
"""Fewer points fit only a ratio (offset 0): two free parameters on three points would follow the noise."""
MIN_SPAN_FOR_LINE = 2.0
"""A line is only tried when the slowest calibration network is predicted at least this many times
the fastest. The search predicts students far faster than random ones; an offset fitted on a
narrow band extrapolates badly there (fitted on students at 0.7-1.0x the teacher, one line put
the fastest selection at 0.38x when 0.25x was measured), while a ratio scales with the work."""


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
    model: str = "line"
    """Which correction was chosen: ``none``, ``ratio`` or ``line`` (see :data:`MODELS`)."""

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
            "model": self.model,
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
                str(d.get("model", "line")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise LatencyError(f"the latency table's calibration is malformed ({e!r}); re-run `hant profile`") from None


MODELS = ("none", "ratio", "line")
"""Corrections tried, simplest first: none (scale 1), a ratio, a line (ratio plus offset)."""


def _fit(model: str, predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(scale, offset) of ``model`` minimising the summed squared relative error; a line falls back
    to a ratio on too few points or when it would be degenerate (predictions too alike, scale <= 0)."""
    if model == "none":
        return 1.0, 0.0
    w = [1.0 / (m * m) for m in measured]
    ratio = sum(wi * p * m for wi, p, m in zip(w, predicted, measured)) / sum(wi * p * p for wi, p in zip(w, predicted))
    if model == "ratio" or len(predicted) < MIN_POINTS_FOR_LINE:
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


def _loo_errors(model: str, predicted: Sequence[float], measured: Sequence[float]) -> list[float]:
    errors = []
    for i, (p, m) in enumerate(zip(predicted, measured)):
        s, o = _fit(model, [x for j, x in enumerate(predicted) if j != i], [x for j, x in enumerate(measured) if j != i])
        errors.append(100.0 * (s * p + o - m) / m)
    return errors


def fit_calibration(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> Calibration:
    """Fit the correction on (uncorrected prediction, measured) pairs of whole networks.

    Of no correction, a ratio and a line (the line only where the points span ``MIN_SPAN_FOR_LINE``),
    the one with the smallest root-mean-square leave-one-out error is kept (ties go to the simpler),
    so that a correction is only applied where it predicts held-out networks better than plain
    addition. Needs at least two networks.
    """
    if len(predicted_ms) != len(measured_ms):
        raise LatencyError("calibration needs as many measured as predicted latencies")
    if len(predicted_ms) < 2:
        raise LatencyError(f"calibration needs at least 2 measured networks, got {len(predicted_ms)}")
    if any(not (x > 0.0 and math.isfinite(x)) for x in [*predicted_ms, *measured_ms]):
        raise LatencyError("calibration latencies must be positive and finite")
    models = MODELS if max(predicted_ms) >= MIN_SPAN_FOR_LINE * min(predicted_ms) else MODELS[:2]
    def loo_sum_sq(model: str) -> float:
        return math.fsum(e * e for e in _loo_errors(model, predicted_ms, measured_ms))

    best = min(models, key=lambda m: (loo_sum_sq(m), MODELS.index(m)))
    scale, offset = _fit(best, predicted_ms, measured_ms)
    return Calibration(
        scale, offset, tuple(map(float, predicted_ms)), tuple(map(float, measured_ms)),
        tuple(_loo_errors(best, predicted_ms, measured_ms)), best,
    )
