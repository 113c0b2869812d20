"""Extra constraints of hant.search: resource limits and at most K changed slots, on every backend."""
from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from hant.errors import InfeasibleBudgetError, SearchError
from hant.search import (
    BACKENDS,
    CandidateCost,
    Problem,
    ResourceLimit,
    SlotChoices,
    changed_slots,
    problem_from_dict,
    problem_to_dict,
    solve,
)
from hant.search.reduce import min_latency_ms, remove_dominated


def constrained_problem(rng: random.Random, n_slots: int, n_cands: int, *, limits: bool, max_changed: int | None) -> Problem:
    """Slot 0-th candidate is 'keep' (score 0); the others are faster, cost fewer or more params/flops."""
    slots = []
    for s in range(n_slots):
        keep = rng.uniform(0.5, 3.0)
        cands = [CandidateCost("keep", keep, 0.0, {"params": 10.0, "flops": 5.0})]
        for c in range(1, n_cands):
            cands.append(
                CandidateCost(
                    f"c{c}", keep * rng.uniform(0.2, 1.2), rng.uniform(0.0, 1.0),
                    {"params": rng.uniform(1.0, 12.0), "flops": rng.uniform(1.0, 6.0)},
                )
            )
        slots.append(SlotChoices(f"s{s}", tuple(cands)))
    lo = sum(min(c.latency_ms for c in s.candidates) for s in slots)
    hi = sum(s.candidates[0].latency_ms for s in slots)
    lims = ()
    if limits:
        lims = (
            ResourceLimit("params", 1.0 + 9.0 * n_slots * rng.uniform(0.7, 1.0), fixed=1.0),
            ResourceLimit("flops", 0.5 + 4.5 * n_slots * rng.uniform(0.8, 1.0), fixed=0.5),
        )
    budget = 0.5 + lo + rng.uniform(0.2, 0.9) * (hi - lo)
    return Problem(tuple(slots), budget, 0.5, lims, max_changed)


def fits(problem: Problem, choice: dict[str, str]) -> bool:
    cands = [next(c for c in slot.candidates if c.key == choice[slot.name]) for slot in problem.slots]
    if math.fsum([problem.fixed_latency_ms, *(c.latency_ms for c in cands)]) > problem.budget_ms:
        return False
    for lim in problem.limits:
        if math.fsum([lim.fixed, *(c.resources[lim.name] for c in cands)]) > lim.limit:
            return False
    changed = sum(c.key != slot.candidates[0].key for c, slot in zip(cands, problem.slots))
    return problem.max_changed is None or changed <= problem.max_changed


def brute_force(problem: Problem) -> float | None:
    best = None
    for combo in itertools.product(*(slot.candidates for slot in problem.slots)):
        choice = {slot.name: c.key for slot, c in zip(problem.slots, combo)}
        if fits(problem, choice):
            score = math.fsum(c.score for c in combo)
            best = score if best is None else min(best, score)
    return best


def outcome(problem: Problem, **kwargs) -> float | str:
    """The optimum's score, or 'infeasible'."""
    try:
        sel = solve(problem, time_limit_s=60, **kwargs)
    except SearchError:
        return "infeasible"
    assert fits(problem, sel.choices)
    assert sel.status == "optimal" and sel.gap == 0.0, (kwargs, sel.solve_seconds, sel.extras.get("solver_status"))
    return sel.total_score


@pytest.mark.parametrize("seed", range(24))
def test_brute_force_agrees_with_every_backend_under_extra_constraints(seed):
    rng = random.Random(2000 + seed)
    problem = constrained_problem(
        rng, rng.randint(1, 4), rng.randint(1, 5), limits=rng.random() < 0.7, max_changed=rng.choice([None, 0, 1, 2])
    )
    best = brute_force(problem)
    for backend in BACKENDS:
        got = outcome(problem, backend=backend)
        if best is None:
            assert got == "infeasible", backend
        else:
            assert got == pytest.approx(best, abs=1e-6), backend


@pytest.mark.parametrize("seed", range(6))
def test_backends_agree_on_larger_constrained_instances(seed):
    rng = random.Random(3000 + seed)
    problem = constrained_problem(rng, 14, 10, limits=seed % 3 != 2, max_changed=[None, 4, 7][seed % 3])
    scores = {(b, fixing): outcome(problem, backend=b, fixing=fixing) for b in BACKENDS for fixing in (True, False)}
    values = set(v if isinstance(v, str) else round(v, 6) for v in scores.values())
    assert len(values) == 1, scores


def test_max_changed_limits_the_changed_slots_and_the_min_latency():
    slot = lambda n: SlotChoices(n, (CandidateCost("keep", 2.0, 0.0), CandidateCost("fast", 1.0, 0.1)))
    problem = Problem(tuple(slot(f"s{i}") for i in range(5)), budget_ms=7.0, max_changed=3)
    sel = solve(problem)
    assert sum(k != "keep" for k in sel.choices.values()) == 3
    assert min_latency_ms(problem) == 7.0
    with pytest.raises(InfeasibleBudgetError) as info:
        solve(Problem(problem.slots, budget_ms=6.5, max_changed=3))
    assert info.value.min_latency_ms == 7.0
    assert "smallest achievable latency is 7.000 ms" in str(info.value)


def test_a_changed_slot_is_one_off_its_first_candidate_whatever_the_keys():
    # a problem from a file may name its first candidates anything; "keep" second is a change
    first = lambda n: SlotChoices(n, (CandidateCost("int8", 1.0, 0.2), CandidateCost("keep", 2.0, 0.0)))
    problem = Problem((first("a"), first("b"), first("c")), budget_ms=4.0, max_changed=1)
    sel = solve(problem)
    assert sorted(sel.choices.values()) == ["int8", "int8", "keep"]  # one slot left its first candidate
    assert sel.extras["changed_slots"] == changed_slots(problem, sel.choices) == 1
    assert changed_slots(problem, {"a": "keep", "b": "keep", "c": "int8"}) == 2


def test_max_changed_keeps_a_dominated_keep_candidate():
    # "keep" is dominated by "twin" (same latency, lower score), but only "keep" leaves the slot unchanged.
    slot = SlotChoices("a", (CandidateCost("keep", 2.0, 0.5), CandidateCost("twin", 2.0, 0.1)))
    other = SlotChoices("b", (CandidateCost("keep", 2.0, 0.0), CandidateCost("fast", 1.0, 0.3)))
    problem = Problem((slot, other), budget_ms=3.0, max_changed=1)
    assert [c.key for c in remove_dominated(problem).slots[0].candidates] == ["keep", "twin"]
    sel = solve(problem)
    assert sel.choices == {"a": "keep", "b": "fast"}
    assert sel.total_score == pytest.approx(0.8)


def test_a_resource_limit_alone_that_cannot_be_met_names_the_smallest_total():
    problem = constrained_problem(random.Random(1), 3, 4, limits=True, max_changed=None)
    least = 1.0 + sum(min(c.resources["params"] for c in s.candidates) for s in problem.slots)
    tight = Problem(problem.slots, problem.budget_ms, 0.5, (ResourceLimit("params", least * 0.9, 1.0),))
    with pytest.raises(SearchError, match=r"params limit .*smallest achievable params is") as info:
        solve(tight)
    assert f"{least:.6g}" in str(info.value)


def test_a_budget_under_the_fastest_selection_the_limits_allow_names_that_latency():
    """Each row alone can be met (both fast: 2 ms; both keep: 2 params), but under 3 params only
    both keep fit, at 4 ms: the budget is what cannot be met, and 4 ms is the floor to raise it to."""
    slot = lambda n: SlotChoices(n, (CandidateCost("keep", 2.0, 0.0, {"params": 1.0}), CandidateCost("fast", 1.0, 0.1, {"params": 5.0})))
    problem = Problem((slot("a"), slot("b")), budget_ms=2.5, limits=(ResourceLimit("params", 3.0),))
    for backend in BACKENDS:
        with pytest.raises(InfeasibleBudgetError) as info:
            solve(problem, backend=backend)
        assert info.value.min_latency_ms == pytest.approx(4.0)
        floor = solve(Problem(problem.slots, info.value.min_latency_ms, limits=problem.limits), backend=backend)
        assert floor.choices == {"a": "keep", "b": "keep"}


def test_limits_that_cannot_be_met_together_say_so():
    slot = lambda n: SlotChoices(n, (CandidateCost("p", 1.0, 0.0, {"params": 1.0, "flops": 0.0}),
                                     CandidateCost("f", 1.0, 0.0, {"params": 0.0, "flops": 1.0})))
    problem = Problem((slot("a"), slot("b")), budget_ms=5.0,
                      limits=(ResourceLimit("params", 0.5), ResourceLimit("flops", 0.5)))
    for backend in BACKENDS:
        with pytest.raises(SearchError, match="together"):
            solve(problem, backend=backend)


# --------------------------------------------------------------------------- JSON form


def constrained_dict() -> dict:
    return {
        "slots": [
            {"name": "conv1", "candidates": [
                {"key": "keep", "latency_ms": 2.0, "score": 0.0, "resources": {"params": 100, "flops": 10}},
                {"key": "half", "latency_ms": 1.0, "score": 0.4, "resources": {"params": 50, "flops": 5}},
            ]},
            {"name": "conv2", "candidates": [
                {"key": "keep", "latency_ms": 1.0, "score": 0.0, "resources": {"params": 80, "flops": 8}},
                {"key": "skip", "latency_ms": 0.1, "score": 0.9, "resources": {"params": 0, "flops": 0}},
            ]},
        ],
        "budget_ms": 3.5,
        "limits": [{"name": "params", "limit": 160, "fixed": 10}],
        "max_changed": 1,
    }


def test_constrained_dict_round_trip_and_solve():
    problem = problem_from_dict(constrained_dict())
    assert problem.limits == (ResourceLimit("params", 160.0, 10.0),)
    assert problem.max_changed == 1
    assert problem.slots[1].candidates[1].resources == {"params": 0.0, "flops": 0.0}
    assert problem_from_dict(json.loads(json.dumps(problem_to_dict(problem)))) == problem
    sel = solve(problem)
    assert sel.choices == {"conv1": "half", "conv2": "keep"}
    assert sel.extras["totals"]["params"] == 140.0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["limits"][0].pop("limit"), "limit 0 has no 'limit'"),
        (lambda d: d["limits"][0].update(limit=-1), "limit 0 ('params') has limit=-1.0; it must be >= 0"),
        (lambda d: d["limits"][0].update(fixed="x"), "limit 0 ('params') has fixed='x'"),
        (lambda d: d["limits"][0].update(name="latency_ms"), "limit 0 limits 'latency_ms'"),
        (lambda d: d["limits"].append({"name": "params", "limit": 1}), "limit 1 limits 'params' a second time"),
        (lambda d: d["limits"][0].update(max=3), "limit 0 has unknown field 'max'"),
        (lambda d: d.update(limits={"params": 1}), "the problem has 'limits' of type dict; it must be a list"),
        (lambda d: d.update(max_changed=-1), "max_changed=-1"),
        (lambda d: d.update(max_changed=1.5), "max_changed=1.5"),
        (lambda d: d["slots"][1]["candidates"][1]["resources"].pop("params"),
         "slot 'conv2' candidate 1 ('skip') has no resource 'params'"),
        (lambda d: d["slots"][0]["candidates"][0]["resources"].update(params=float("nan")),
         "slot 'conv1' candidate 0 ('keep') has resources['params']=nan"),
        (lambda d: d["slots"][0]["candidates"][0]["resources"].update(params=-3),
         "resources['params']=-3.0; it must be >= 0"),
        (lambda d: d["slots"][0]["candidates"][0].update(resources=[1]), "slot 'conv1' candidate 0 has 'resources' of type list"),
    ],
)
def test_malformed_constraints_name_the_field(change, message):
    d = constrained_dict()
    change(d)
    with pytest.raises(SearchError) as info:
        problem_from_dict(d)
    assert message in str(info.value)


def test_unlimited_resources_need_not_be_complete():
    d = constrained_dict()
    del d["slots"][0]["candidates"][0]["resources"]["flops"]  # flops is not limited
    assert problem_from_dict(d).slots[0].candidates[0].resources == {"params": 100.0}
