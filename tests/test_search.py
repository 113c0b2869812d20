"""Tests of hant.search: JSON form, dominance, conservative scaling, and the three solver backends."""
from __future__ import annotations

import itertools
import json
import math
import random
from fractions import Fraction

import pytest

from hant.errors import InfeasibleBudgetError, SearchError
from hant.search import (
    BACKENDS,
    CandidateCost,
    Problem,
    Selection,
    SlotChoices,
    problem_from_dict,
    problem_to_dict,
    solve,
)
from hant.search.cbc import _lower_bound
from hant.search.reduce import min_latency_ms, pareto_indices, remove_dominated
from hant.search.scaling import integerize

# --------------------------------------------------------------------------- helpers


def random_problem(rng: random.Random, n_slots: int, n_cands: int, budget_frac: float, fixed: float = 0.5) -> Problem:
    """Slot 0-th candidate is 'keep' (slowest-ish, score 0); the others are faster with positive scores."""
    slots = []
    for s in range(n_slots):
        keep = rng.uniform(0.5, 3.0)
        cands = [CandidateCost("keep", keep, 0.0)]
        for c in range(1, n_cands):
            cands.append(CandidateCost(f"c{c}", keep * rng.uniform(0.2, 1.2), rng.uniform(0.001, 1.0)))
        slots.append(SlotChoices(f"layer{s}", tuple(cands)))
    lo = sum(min(c.latency_ms for c in s.candidates) for s in slots)
    hi = sum(s.candidates[0].latency_ms for s in slots)
    return Problem(tuple(slots), budget_ms=fixed + lo + budget_frac * (hi - lo), fixed_latency_ms=fixed)


def exact_latency(problem: Problem, choices: dict[str, str]) -> Fraction:
    """Exact rational latency of a selection (no float round-off)."""
    total = Fraction(problem.fixed_latency_ms)
    for slot in problem.slots:
        total += Fraction(next(c.latency_ms for c in slot.candidates if c.key == choices[slot.name]))
    return total


def score_of(problem: Problem, choices: dict[str, str]) -> float:
    return math.fsum(
        next(c.score for c in slot.candidates if c.key == choices[slot.name]) for slot in problem.slots
    )


def fsum_latency(problem: Problem, choices: dict[str, str]) -> float:
    """hant's definition of a selection's latency: the correctly rounded sum."""
    return math.fsum(
        [problem.fixed_latency_ms]
        + [next(c.latency_ms for c in slot.candidates if c.key == choices[slot.name]) for slot in problem.slots]
    )


def brute_force(problem: Problem) -> float | None:
    """Least total score over every combination that fits (fsum <= budget); None when none fits."""
    best = None
    for combo in itertools.product(*(slot.candidates for slot in problem.slots)):
        if math.fsum([problem.fixed_latency_ms] + [c.latency_ms for c in combo]) <= problem.budget_ms:
            score = math.fsum(c.score for c in combo)
            best = score if best is None else min(best, score)
    return best


def assert_feasible(problem: Problem, sel: Selection) -> None:
    """Fits by hant's definition; and exactly, in rationals, whenever an integer solver produced it."""
    assert sel.predicted_latency_ms == fsum_latency(problem, sel.choices)
    assert sel.predicted_latency_ms <= problem.budget_ms
    if "budget_units" in sel.extras and Fraction(problem.budget_ms) >= Fraction(min_latency_ms(problem)):
        assert exact_latency(problem, sel.choices) <= Fraction(problem.budget_ms)


# --------------------------------------------------------------------------- backends agree with each other and with brute force


@pytest.mark.parametrize("seed", range(20))
def test_backends_agree_on_random_instances(seed):
    rng = random.Random(seed)
    problem = random_problem(rng, n_slots=6, n_cands=8, budget_frac=rng.uniform(0.05, 0.9))
    results = {b: solve(problem, backend=b, time_limit_s=20) for b in BACKENDS}
    scores = [r.total_score for r in results.values()]
    for b, sel in results.items():
        assert sel.status == "optimal", b
        assert sel.gap == 0.0
        assert sel.backend == b
        assert set(sel.choices) == {s.name for s in problem.slots}
        assert sel.total_score == pytest.approx(score_of(problem, sel.choices), abs=1e-12)
        assert_feasible(problem, sel)
    assert max(scores) - min(scores) <= 1e-6


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_brute_force_on_tiny_instances(seed, backend):
    rng = random.Random(1000 + seed)
    problem = random_problem(rng, n_slots=rng.randint(1, 4), n_cands=rng.randint(1, 5), budget_frac=rng.uniform(0, 1))
    best = brute_force(problem)
    sel = solve(problem, backend=backend)
    assert best is not None
    assert sel.total_score == pytest.approx(best, abs=1e-6)
    assert_feasible(problem, sel)


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_and_tied_scores(backend):
    rng = random.Random(7)
    slots = []
    for s in range(5):
        cands = [CandidateCost(f"k{c}", rng.choice([1.0, 1.5, 2.0]), rng.choice([-0.5, 0.0, 0.25, 0.25])) for c in range(6)]
        slots.append(SlotChoices(f"s{s}", tuple(cands)))
    problem = Problem(tuple(slots), budget_ms=7.5)
    sel = solve(problem, backend=backend)
    assert sel.total_score == pytest.approx(brute_force(problem), abs=1e-9)
    assert_feasible(problem, sel)


# --------------------------------------------------------------------------- budget edge cases


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("extra", [0.0, 1e-9, 5.0])
def test_budget_at_or_above_keep_latency_keeps_everything(backend, extra):
    problem = random_problem(random.Random(3), n_slots=8, n_cands=6, budget_frac=0.5, fixed=0.3)
    keep_total = math.fsum([problem.fixed_latency_ms] + [slot.candidates[0].latency_ms for slot in problem.slots])
    problem = Problem(problem.slots, budget_ms=keep_total + extra, fixed_latency_ms=problem.fixed_latency_ms)
    sel = solve(problem, backend=backend)
    assert sel.choices == {s.name: "keep" for s in problem.slots}
    assert sel.total_score == 0.0
    assert sel.status == "optimal" and sel.gap == 0.0


def test_infeasible_budget_reports_min_latency():
    problem = random_problem(random.Random(4), n_slots=5, n_cands=7, budget_frac=0.5, fixed=2.0)
    fastest = 2.0 + sum(min(c.latency_ms for c in s.candidates) for s in problem.slots)
    tight = Problem(problem.slots, budget_ms=fastest * 0.99, fixed_latency_ms=2.0)
    with pytest.raises(InfeasibleBudgetError) as info:
        solve(tight)
    assert info.value.min_latency_ms == pytest.approx(fastest, rel=1e-12)
    assert info.value.budget_ms == tight.budget_ms
    assert isinstance(info.value, SearchError)
    assert "raise the budget" in str(info.value)
    assert min_latency_ms(tight) == pytest.approx(fastest, rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_budget_exactly_at_min_latency_picks_fastest(backend):
    problem = random_problem(random.Random(5), n_slots=6, n_cands=6, budget_frac=0.5)
    at_min = Problem(problem.slots, budget_ms=min_latency_ms(problem), fixed_latency_ms=problem.fixed_latency_ms)
    sel = solve(at_min, backend=backend)
    for slot in problem.slots:
        chosen = next(c for c in slot.candidates if c.key == sel.choices[slot.name])
        assert chosen.latency_ms == min(c.latency_ms for c in slot.candidates)


# --------------------------------------------------------------------------- conservative scaling


def boundary_problem(rng: random.Random, grid: float, n_slots: int = 6, n_cands: int = 6) -> tuple[Problem, dict]:
    """Latencies a hair off multiples of 1/grid, and a budget exactly at a random selection's latency."""
    slots = []
    for s in range(n_slots):
        base = rng.randint(100, 3000) / grid
        cands = [CandidateCost("fast", base, 10.0)]
        for c in range(1, n_cands):
            k = rng.randint(1, 400)
            nudge = rng.choice([-1e-9, 1e-9, 0.5 - 1e-9, 0.5 + 1e-9, 1 - 1e-12])
            cands.append(CandidateCost(f"c{c}", base + (k + nudge) / grid, 10.0 - k / 100 - rng.random() / 1000))
        slots.append(SlotChoices(f"s{s}", tuple(cands)))
    # Scores fall as latency grows, and slot 0 targets its fastest: the all-best-score pick cannot fit.
    target = {slot.name: rng.choice(slot.candidates).key for slot in slots}
    target[slots[0].name] = "fast"
    problem = Problem(tuple(slots), budget_ms=0.0, fixed_latency_ms=0.25)
    budget = float(exact_latency(problem, target))
    if Fraction(budget) < exact_latency(problem, target):
        budget = math.nextafter(budget, math.inf)
    return Problem(tuple(slots), budget_ms=budget, fixed_latency_ms=0.25), target


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grid", [1e3, 2.0**10, 1e4, 2.0**20])
def test_selection_feasible_in_floats_near_rounding_boundaries(backend, grid):
    rng = random.Random(int(grid) % 997)
    for _ in range(4):
        problem, target = boundary_problem(rng, grid)
        sel = solve(problem, backend=backend)
        assert "budget_units" in sel.extras  # the integer model ran
        assert exact_latency(problem, sel.choices) <= Fraction(problem.budget_ms)
        assert_feasible(problem, sel)
        # Plain left-to-right float summation agrees too.
        total = problem.fixed_latency_ms
        for slot in problem.slots:
            total += next(c.latency_ms for c in slot.candidates if c.key == sel.choices[slot.name])
        assert total <= problem.budget_ms * (1 + 1e-15)


@pytest.mark.parametrize("seed", range(10))
def test_integerize_rounds_latency_up_and_budget_down(seed):
    rng = random.Random(seed)
    problem, _ = boundary_problem(rng, grid=rng.choice([1e3, 1e4, 2.0**14]))
    scaled = integerize(problem)
    scale = Fraction(scaled.lat_scale)
    fastest = [min(Fraction(c.latency_ms) for c in s.candidates) for s in problem.slots]
    slack = Fraction(problem.budget_ms) - Fraction(problem.fixed_latency_ms) - sum(fastest)
    assert 0 <= scaled.budget <= slack * scale < scaled.budget + 1
    for s, slot in enumerate(problem.slots):
        assert 0 in scaled.latency[s]  # the fastest candidate always stays and costs 0 units
        for units, i in zip(scaled.latency[s], scaled.index[s]):
            delta = (Fraction(slot.candidates[i].latency_ms) - fastest[s]) * scale
            assert delta <= units < delta + 1
        assert all(u >= 0 for u in scaled.score[s])


def test_integerize_keeps_score_order_and_ties():
    slot = SlotChoices("a", (CandidateCost("x", 3.0, 0.1), CandidateCost("y", 2.0, 0.2), CandidateCost("z", 1.0, 0.30000001)))
    other = SlotChoices("b", (CandidateCost("p", 3.0, 0.1), CandidateCost("q", 1.0, 0.2)))
    scaled = integerize(Problem((slot, other), budget_ms=10.0))
    assert list(scaled.score[0]) == sorted(scaled.score[0])
    assert len(set(scaled.score[0])) == 3
    assert scaled.score[0][1] == scaled.score[1][1]  # equal float score offsets stay equal


# --------------------------------------------------------------------------- dominance


def test_pareto_indices_drops_dominated_and_duplicates_deterministically():
    costs = [(2.0, 1.0), (1.0, 3.0), (2.0, 1.0), (3.0, 1.0), (1.0, 4.0), (0.5, 5.0), (2.5, 0.5)]
    assert pareto_indices(costs) == [0, 1, 5, 6]
    assert pareto_indices([(1.0, 1.0)] * 3) == [0]
    assert pareto_indices([]) == []


@pytest.mark.parametrize("seed", range(15))
def test_dominance_reduction_never_changes_the_optimum(seed):
    rng = random.Random(500 + seed)
    slots = []
    for s in range(3):
        cands = [
            CandidateCost(f"c{c}", float(rng.randint(1, 6)), float(rng.randint(0, 5))) for c in range(rng.randint(1, 7))
        ]
        slots.append(SlotChoices(f"s{s}", tuple(cands)))
    problem = Problem(tuple(slots), budget_ms=float(rng.randint(3, 18)))
    reduced = remove_dominated(problem)
    assert all(len(r.candidates) >= 1 for r in reduced.slots)
    assert min_latency_ms(reduced) == min_latency_ms(problem)
    assert brute_force(reduced) == brute_force(problem)
    if brute_force(problem) is not None:
        assert solve(problem).total_score == pytest.approx(brute_force(problem), abs=1e-9)


# --------------------------------------------------------------------------- determinism and API


def test_ties_are_broken_deterministically():
    slot = lambda n: SlotChoices(n, (CandidateCost("keep", 2.0, 0.0), CandidateCost("fast", 1.0, 1.0)))
    problem = Problem(tuple(slot(f"s{i}") for i in range(6)), budget_ms=9.0)  # any three of six go fast
    for backend in BACKENDS:
        first = solve(problem, backend=backend)
        assert sum(k == "fast" for k in first.choices.values()) == 3
        for _ in range(2):
            assert solve(problem, backend=backend).choices == first.choices


def test_duplicate_candidates_keep_the_first():
    slot = SlotChoices("a", (CandidateCost("one", 1.0, 0.5), CandidateCost("two", 1.0, 0.5), CandidateCost("keep", 2.0, 0.0)))
    assert solve(Problem((slot,), budget_ms=1.5)).choices == {"a": "one"}


def test_selection_fields_and_json():
    problem = random_problem(random.Random(9), n_slots=4, n_cands=5, budget_frac=0.3)
    sel = solve(problem)
    assert sel.backend == "cpsat" and sel.budget_ms == problem.budget_ms
    assert sel.solve_seconds > 0
    assert sel.extras["candidates"] == 20
    back = Selection.from_dict(json.loads(json.dumps(sel.to_dict())))
    assert back == sel


def test_unknown_backend_lists_choices():
    problem = random_problem(random.Random(1), 2, 2, 0.5)
    with pytest.raises(SearchError, match="gurobi.*cpsat.*scip.*cbc"):
        solve(problem, backend="gurobi")


@pytest.mark.parametrize("limit", [0, -1.0, float("nan")])
def test_bad_time_limit(limit):
    with pytest.raises(SearchError, match="time_limit_s"):
        solve(random_problem(random.Random(1), 2, 2, 0.5), time_limit_s=limit)


def test_cbc_lower_bound_parsing():
    text = "Result - Stopped on time limit\n\nObjective value:   12.0\nLower bound:  10.5\nGap: 0.1\n"
    assert _lower_bound(text, 0.0) == 10.5
    assert _lower_bound("No feasible solution found\n", 0.0) == 0.0


# --------------------------------------------------------------------------- JSON form


def good_dict() -> dict:
    return {
        "slots": [
            {"name": "layer1.0", "candidates": [
                {"key": "keep", "latency_ms": 2.0, "score": 0.0},
                {"key": "dw3x3", "latency_ms": 1.0, "score": 0.3},
                {"key": "skip", "latency_ms": 0.1, "score": 2},
            ]},
            {"name": "layer1.1", "candidates": [{"key": "keep", "latency_ms": 1.5, "score": 0.0}]},
        ],
        "budget_ms": 3.0,
        "fixed_latency_ms": 0.5,
    }


def test_dict_round_trip():
    problem = problem_from_dict(good_dict())
    assert problem.slots[0].candidates[2] == CandidateCost("skip", 0.1, 2.0)
    assert isinstance(problem.slots[0].candidates[2].score, float)
    assert problem_from_dict(json.loads(json.dumps(problem_to_dict(problem)))) == problem
    d = good_dict()
    del d["fixed_latency_ms"]
    assert problem_from_dict(d).fixed_latency_ms == 0.0


def _mutate(path, value=None, delete=False):
    def apply(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return d
    return apply


S0C2 = ("slots", 0, "candidates", 2)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_mutate((*S0C2, "latency_ms"), delete=True), "slot 'layer1.0' candidate 2 has no 'latency_ms'"),
        (_mutate((*S0C2, "score"), delete=True), "slot 'layer1.0' candidate 2 has no 'score'"),
        (_mutate((*S0C2, "key"), delete=True), "slot 'layer1.0' candidate 2 has no 'key'"),
        (_mutate((*S0C2, "latency_ms"), float("nan")), "slot 'layer1.0' candidate 2 ('skip') has latency_ms=nan"),
        (_mutate((*S0C2, "latency_ms"), -0.1), "slot 'layer1.0' candidate 2 ('skip') has latency_ms=-0.1; it must be >= 0"),
        (_mutate((*S0C2, "latency_ms"), float("inf")), "latency_ms=inf"),
        (_mutate((*S0C2, "latency_ms"), "fast"), "latency_ms='fast'; it must be a number"),
        (_mutate((*S0C2, "latency_ms"), True), "latency_ms=True"),
        (_mutate((*S0C2, "score"), float("nan")), "candidate 2 ('skip') has score=nan"),
        (_mutate((*S0C2, "key"), "keep"), "slot 'layer1.0' has candidate key 'keep' twice"),
        (_mutate((*S0C2, "latency"), 1.0), "slot 'layer1.0' candidate 2 has unknown field 'latency'"),
        (_mutate(S0C2, 3), "slot 'layer1.0' candidate 2 must be a JSON object"),
        (_mutate(("slots", 1, "name"), "layer1.0"), "slot 'layer1.0' appears twice"),
        (_mutate(("slots", 1, "candidates"), []), "slot 'layer1.1' has no candidates"),
        (_mutate(("slots", 1, "candidates"), delete=True), "slot 'layer1.1' has no 'candidates'"),
        (_mutate(("slots", 1, "name"), delete=True), "slot 1 has no 'name'"),
        (_mutate(("slots", 1, "name"), ""), "slot 1 has name=''"),
        (_mutate(("slots",), []), "the problem has no slots"),
        (_mutate(("slots",), delete=True), "the problem has no 'slots'"),
        (_mutate(("budget_ms",), delete=True), "the problem has no 'budget_ms'"),
        (_mutate(("budget_ms",), float("nan")), "budget_ms=nan"),
        (_mutate(("fixed_latency_ms",), float("inf")), "fixed_latency_ms=inf"),
        (_mutate(("budget",), 3.0), "the problem has unknown field 'budget'"),
    ],
)
def test_malformed_dicts_name_the_field(mutate, message):
    with pytest.raises(SearchError) as info:
        problem_from_dict(mutate(good_dict()))
    assert message in str(info.value)


def test_non_dict_problem():
    with pytest.raises(SearchError, match="must be a JSON object"):
        problem_from_dict([1, 2])  # type: ignore[arg-type]


def test_solve_validates_directly_built_problems():
    bad = Problem((SlotChoices("a", (CandidateCost("k", float("nan"), 0.0),)),), budget_ms=1.0)
    with pytest.raises(SearchError, match="slot 'a' candidate 0 \\('k'\\) has latency_ms=nan"):
        solve(bad)
    with pytest.raises(SearchError, match="slot 'a' has no candidates"):
        solve(Problem((SlotChoices("a", ()),), budget_ms=1.0))
