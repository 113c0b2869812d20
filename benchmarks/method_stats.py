"""Statistics of compare_methods.py: mean ± std over seeds, and a paired bootstrap of accuracy gaps.

A method's students (one per seed) are each kept as a per-image correctness vector over the same
test images. The gap of method A to a reference R is the difference of their seed-averaged
accuracies; its 95 % interval comes from resampling test images with replacement (the same images
for both methods and every seed), which is what makes the comparison paired: an image that every
student gets wrong widens neither interval.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

RESAMPLES = 2000
"""Bootstrap resamples of the test images."""
CONFIDENCE = 0.95
"""Coverage of the bootstrap interval."""
CHUNK = 200
"""Resamples drawn at once (bounds memory to CHUNK × images indices)."""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def per_image_accuracy(correct: np.ndarray) -> np.ndarray:
    """Per test image, the share of a method's students (rows: seeds) that classify it correctly."""
    c = np.atleast_2d(np.asarray(correct, dtype=float))
    return c.mean(axis=0)


def paired_bootstrap_gap(
    correct: np.ndarray, reference: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, float]:
    """Accuracy gap (percentage points, ``correct`` minus ``reference``) of two methods' students,
    each a (seeds, images) 0/1 array over the same test images, averaged over seeds, with a percentile
    bootstrap interval over images resampled with replacement (``resamples`` draws from ``seed``)."""
    a, r = per_image_accuracy(correct), per_image_accuracy(reference)
    if a.shape != r.shape:
        raise ValueError(f"the two methods were evaluated on different test sets ({a.size} and {r.size} images)")
    diff = 100.0 * (a - r)
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, resamples, CHUNK):
        idx = rng.integers(0, diff.size, size=(min(CHUNK, resamples - start), diff.size))
        draws.append(diff[idx].mean(axis=1))
    boot = np.concatenate(draws)
    tail = 100.0 * (1.0 - confidence) / 2
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    return {"gap": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "resamples": resamples, "confidence": confidence}
