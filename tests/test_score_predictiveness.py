"""benchmarks/score_predictiveness.py: its statistics and perturbation on known inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import score_predictiveness as sp  # noqa: E402

from hant.search import CandidateCost, Problem, SlotChoices  # noqa: E402


def _row(budget, accuracy, **scores):
    return {"budget": budget, "test_accuracy": accuracy, "scores": {name: scores.get(name) for name in sp.SCORES}}


def test_a_score_that_orders_students_by_accuracy_correlates_fully():
    rows = [_row(0.5, acc, feature_loss=loss, swap_kl=kl, swap_error=1.0)
            for acc, loss, kl in [(90.0, 0.1, 0.3), (89.0, 0.2, 0.1), (88.0, 0.3, 0.2), (87.0, 0.4, 0.4)]]
    out = sp.correlations(rows, "budget")
    assert out["feature_loss"]["spearman"] == pytest.approx(1.0)
    assert out["feature_loss"]["kendall"] == pytest.approx(1.0)
    assert out["swap_kl"]["spearman"] == pytest.approx(0.4)  # ranks 1,3,2,4 of goodness against 1,2,3,4
    assert out["swap_error"]["spearman"] is None  # constant: no ranking


def test_within_budget_groups_are_weighted_by_size():
    rows = [_row(0.3, a, feature_loss=s) for a, s in [(80, 1), (79, 2), (78, 3)]]
    rows += [_row(0.5, a, feature_loss=s) for a, s in [(85, 3), (84, 2), (83, 1), (82, 0)]]
    out = sp.correlations(rows, "budget")["feature_loss"]
    assert out["groups"]["0.3"]["spearman"] == pytest.approx(1.0)
    assert out["groups"]["0.5"]["spearman"] == pytest.approx(-1.0)
    assert out["spearman"] == pytest.approx((3 * 1.0 + 4 * -1.0) / 7)


def test_missing_scores_leave_the_student_out():
    rows = [_row(0.5, a, feature_loss=s) for a, s in [(90, 1), (89, 2), (88, 3)]] + [_row(0.5, 91)]
    assert sp.correlations(rows, "budget")["feature_loss"]["groups"]["0.5"]["n"] == 3


def test_perturbation_keeps_keys_and_latencies_and_scales_scores():
    problem = Problem((SlotChoices("a", (CandidateCost("keep", 2.0, 0.0), CandidateCost("x", 1.0, 0.5))),), 3.0)
    out = sp.perturbed(problem, 0.5, np.random.default_rng(0))
    (a,) = out.slots
    assert [c.key for c in a.candidates] == ["keep", "x"] and [c.latency_ms for c in a.candidates] == [2.0, 1.0]
    assert a.candidates[0].score == 0.0 and a.candidates[1].score != 0.5 and a.candidates[1].score > 0
    assert out.budget_ms == 3.0


def test_swap_error_is_the_swap_in_error_rate():
    assert sp.SCORES["swap_error"]({"swap_accuracy": 97.5}) == pytest.approx(2.5)
    assert sp.SCORES["swap_error"]({"swap_accuracy": None}) is None
