"""Presolve of hant.search: exact scaling, dominance, bounds, reduced-cost fixing, warm starts and sweeps."""
from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
import search_instances as instances

from hant.search import CandidateCost, Problem, SlotChoices, solve
from hant.search.bounds import best_bound, lagrangian
from hant.search.dense import Dense
from hant.search.incumbent import beam_search
from hant.search.presolve import presolve
from hant.search.reduce import pareto_mask
from hant.search.scaling import _exact_ceil_units, integerize
from hant.search.sweep import keep_latency_ms, sweep


def integer_optimum(model) -> float | None:
    """Brute force over the integer model: least score units with every row within its cap."""
    best = None
    for combo in itertools.product(*(range(len(p)) for p in model.score)):
        used = sum(w[:, c] for w, c in zip(model.weights, combo))
        if (used <= np.array(model.caps)).all():
            value = float(sum(p[c] for p, c in zip(model.score, combo)))
            best = value if best is None else min(best, value)
    return best


# --------------------------------------------------------------------------- exact scaling


def test_exact_ceil_matches_rational_arithmetic():
    rng = random.Random(0)
    values, bases = [], []
    for _ in range(4000):
        base = rng.choice([0.0, 1e-300, rng.uniform(0, 5), rng.uniform(1e3, 1e6), 0.1, 1 / 3])
        kind = rng.random()
        if kind < 0.3:
            value = base
        elif kind < 0.6:
            value = math.nextafter(base + rng.randint(0, 50) / rng.choice([1, 3, 7, 1024]), math.inf)
        else:
            value = base + rng.uniform(0, 10) * rng.choice([1, 1e-9, 1e6])
        values.append(max(value, base))
        bases.append(base)
    for exponent in (0, 7, 20, 30, 45):
        got = _exact_ceil_units(np.array(values), np.array(bases), exponent)
        assert got is not None
        scale = Fraction(2) ** exponent
        for v, b, u in zip(values, bases, got.tolist()):
            exact = (Fraction(v) - Fraction(b)) * scale
            want = -((-exact.numerator) // exact.denominator)
            assert u == min(want, 2**52), (v, b, exponent)


def test_exact_ceil_declines_when_scaling_would_underflow():
    assert _exact_ceil_units(np.array([5e-324]), np.array([0.0]), -3) is None


# --------------------------------------------------------------------------- dominance and bounds


@pytest.mark.parametrize("criteria", [2, 3, 4])
def test_pareto_mask_matches_pairwise_definition(criteria):
    rng = np.random.default_rng(criteria)
    for _ in range(30):
        costs = rng.integers(0, 4, size=(criteria, rng.integers(1, 12))).astype(float)
        n = costs.shape[1]
        want = []
        for i in range(n):
            dominated = any(
                (costs[:, j] <= costs[:, i]).all() and ((costs[:, j] < costs[:, i]).any() or j < i)
                for j in range(n) if j != i
            )
            want.append(not dominated)
        assert pareto_mask(costs).tolist() == want


@pytest.mark.parametrize("seed", range(10))
def test_lagrangian_bound_is_below_the_integer_optimum(seed):
    rng = random.Random(seed)
    problem = instances.realistic(rng.randint(2, 5), rng.randint(2, 5), seed=seed, fraction=rng.uniform(0.1, 0.8))
    model = integerize(problem)
    optimum = integer_optimum(model)
    d = Dense.from_model(model)
    bound, picks = best_bound(d)
    assert bound.value <= optimum + 1e-6
    assert picks is None or d.feasible(picks)
    for lam in (0.0, 0.5, 10.0, 1e6):
        assert lagrangian(d, np.array([lam])).value <= optimum + 1e-6
    wide = beam_search(d, d.valid, bound.reduced, bound.value, math.inf, width=10**6)
    assert wide.exhaustive and wide.score == optimum


# --------------------------------------------------------------------------- reduced-cost fixing is exact


def _families(seed: int):
    rng = random.Random(seed)
    size = (rng.randint(3, 25), rng.randint(3, 40))
    fraction = rng.uniform(0.05, 0.95)
    return [
        instances.realistic(*size, seed=seed, fraction=fraction, noise=rng.choice([0.02, 0.15, 0.5])),
        instances.uniform(*size, seed=seed, fraction=fraction),
    ]


@pytest.mark.parametrize("seed", range(15))
def test_fixing_never_removes_the_optimum(seed):
    # The unfixed reference runs on SCIP: plain CP-SAT cannot close some of these (near-collinear
    # candidates) within seconds, which is what the presolve is for.
    for problem in _families(seed):
        with_fixing = solve(problem)
        without = solve(problem, backend="scip", fixing=False)
        assert with_fixing.status == without.status == "optimal"
        assert with_fixing.total_score == pytest.approx(without.total_score, rel=1e-12, abs=1e-12)
        if "budget_units" in with_fixing.extras:
            assert with_fixing.extras["objective_units"] == without.extras["objective_units"]
            assert with_fixing.extras["candidates_after_fixing"] <= without.extras["candidates_in_model"]


@pytest.mark.parametrize("seed", range(8))
def test_presolve_keeps_an_optimal_selection_on_tiny_models(seed):
    rng = random.Random(40 + seed)
    problem = instances.realistic(rng.randint(2, 5), rng.randint(2, 6), seed=seed, fraction=rng.uniform(0.05, 0.9))
    model = integerize(problem)
    pre = presolve(model)
    assert integer_optimum(pre.model) == integer_optimum(model)
    assert pre.lower_bound <= integer_optimum(model)
    if pre.proven:
        assert pre.incumbent == integer_optimum(model)


def test_fixing_leaves_few_candidates_on_a_realistic_instance():
    sel = solve(instances.realistic(55, 197, seed=0, fraction=0.5))
    assert sel.status == "optimal" and sel.gap == 0.0
    assert sel.extras["candidates_after_fixing"] < 0.1 * sel.extras["candidates_after_dominance"]


def test_pruning_instance_is_mostly_dominated():
    sel = solve(instances.pruning(20, seed=1))
    assert sel.status == "optimal"
    assert sel.extras["candidates_after_dominance"] < 0.3 * sel.extras["candidates"]


# --------------------------------------------------------------------------- warm starts and sweeps


def test_warm_start_gives_the_same_answer():
    problem = instances.realistic(30, 40, seed=3, fraction=0.4)
    cold = solve(problem)
    looser = Problem(problem.slots, problem.budget_ms * 1.05, problem.fixed_latency_ms)
    warm = solve(looser, hint=cold.choices)
    assert warm.extras["warm_start_used"]
    assert warm.total_score == pytest.approx(solve(looser).total_score, abs=1e-12)
    assert warm.total_score <= cold.total_score
    stale = solve(looser, hint={"slot0": "no-such-key"})
    assert not stale.extras["warm_start_used"] and stale.total_score == warm.total_score


@pytest.mark.parametrize("seed", range(3))
def test_sweep_is_monotone_and_matches_cold_solves(seed):
    problem = instances.realistic(20, 30, seed=seed)
    reference = keep_latency_ms(problem)
    budgets = [f * reference for f in (0.9, 0.3, 0.5, 0.7, 1.0, 0.05)]
    points = sweep(problem, budgets)
    assert [p.budget_ms for p in points] == sorted(budgets)
    assert points[0].selection is None and points[0].min_latency_ms > points[0].budget_ms
    solved = [p.selection for p in points if p.selection is not None]
    scores = [s.total_score for s in solved]
    assert scores == sorted(scores, reverse=True)
    assert all(s.predicted_latency_ms <= s.budget_ms for s in solved)
    assert solved[-1].total_score == 0.0 and solved[-1].extras["changed_slots"] == 0
    for point in points[1:]:
        cold = solve(Problem(problem.slots, point.budget_ms, problem.fixed_latency_ms))
        assert point.selection.total_score == pytest.approx(cold.total_score, abs=1e-12)
    as_json = points[2].to_dict(reference)
    assert set(as_json) >= {"budget_ms", "budget_fraction", "predicted_latency_ms", "total_score", "selection"}


def test_zero_and_single_candidate_slots():
    slots = (
        SlotChoices("only", (CandidateCost("keep", 1.0, 0.0),)),
        SlotChoices("two", (CandidateCost("keep", 2.0, 0.0), CandidateCost("fast", 0.5, 1.0))),
    )
    sel = solve(Problem(slots, budget_ms=1.5))
    assert sel.choices == {"only": "keep", "two": "fast"}


@pytest.mark.parametrize("make", [lambda: instances.realistic(55, 197, seed=2, fraction=0.5), lambda: instances.pruning(30, seed=2)])
def test_backends_agree_after_presolve_on_benchmark_sized_instances(make):
    problem = make()
    answers = {b: solve(problem, backend=b) for b in ("cpsat", "scip", "cbc")}
    assert {a.status for a in answers.values()} == {"optimal"}
    assert len({a.extras["objective_units"] for a in answers.values()}) == 1
