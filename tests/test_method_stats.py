"""The comparison benchmark's statistics: known correctness vectors give known gaps and intervals."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from method_stats import mean_std, paired_bootstrap_gap  # noqa: E402


def test_mean_std_uses_the_sample_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)


def test_a_constant_difference_has_a_zero_width_interval():
    # every image: all three method students right, one of the two reference students -> +50 points
    # on every image, so no resample can move the gap
    n = 200
    method = np.ones((3, n))
    reference = np.stack([np.ones(n), np.zeros(n)])
    out = paired_bootstrap_gap(method, reference, resamples=500)
    assert out["gap"] == pytest.approx(50.0)
    assert out["ci_low"] == pytest.approx(50.0) and out["ci_high"] == pytest.approx(50.0)


def test_the_gap_averages_over_seeds_before_subtracting():
    # method: seed 0 right on all 4 images, seed 1 on none -> 50 %; reference: 3 of 4 -> 75 %
    method = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])
    reference = np.array([[1, 1, 1, 0]])
    assert paired_bootstrap_gap(method, reference, resamples=100)["gap"] == pytest.approx(-25.0)


def test_the_interval_matches_the_normal_approximation_and_pairing_narrows_it():
    rng = np.random.default_rng(1)
    n = 4000
    shared = rng.random(n) < 0.8  # images both get right, mostly
    flip = rng.random(n) < 0.05  # where the method differs from the reference
    reference = shared[None, :].astype(float)
    method = np.where(flip, ~shared, shared)[None, :].astype(float)
    out = paired_bootstrap_gap(method, reference, resamples=2000, seed=3)
    diff = 100.0 * (method[0] - reference[0])
    half = 1.96 * diff.std(ddof=1) / np.sqrt(n)
    assert out["ci_low"] < out["gap"] < out["ci_high"]
    assert (out["ci_high"] - out["ci_low"]) / 2 == pytest.approx(half, rel=0.15)
    # unpaired, the two accuracies' own errors add up: a far wider interval than the paired one
    unpaired = 1.96 * 100.0 * np.sqrt(2 * 0.8 * 0.2 / n)
    assert (out["ci_high"] - out["ci_low"]) / 2 < unpaired / 2


def test_different_test_sets_are_refused():
    with pytest.raises(ValueError, match="different test sets"):
        paired_bootstrap_gap(np.ones((1, 5)), np.ones((1, 6)))
