"""Linking constraints (coupled channel groups) agree with brute force on every backend."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from hant.errors import SearchError
from hant.search import BACKENDS, CandidateCost, Problem, SlotChoices, solve
from hant.search.linking import Link, linked_problem, links_satisfied

OPTIONS = ("w100", "w50", "w25")


def chain_problem(rng: random.Random) -> tuple[Problem, list[Link]]:
    """Two residual groups g0, g1; blocks a (on g0), b (g0 -> g1), c (on g1), each with two inner widths."""
    slots, links = [], []
    touching = {"a": ("g0",), "b": ("g0", "g1"), "c": ("g1",)}
    for name, groups in touching.items():
        cands, tags = [], {g: [] for g in groups}
        for combo in itertools.product(*(OPTIONS for _ in groups), ("i100", "i50")):
            shrink = sum(OPTIONS.index(o) for o in combo[:-1]) + (combo[-1] == "i50")
            key = "-".join(combo)
            cands.append(CandidateCost(key, 3.0 / (1 + shrink) * rng.uniform(0.8, 1.2), shrink * rng.uniform(0.5, 1.5)))
            for g, o in zip(groups, combo[:-1]):
                tags[g].append(o)
        slots.append(SlotChoices(name, tuple(cands)))
        links += [Link(name, g, tuple(t)) for g, t in tags.items()]
    for g in ("g0", "g1"):
        slots.append(
            SlotChoices(g, tuple(CandidateCost(o, 0.5 / (1 + i), i * rng.uniform(1.0, 3.0)) for i, o in enumerate(OPTIONS)))
        )
    problem = Problem(tuple(slots), 0.0, fixed_latency_ms=0.2)
    lo = 0.2 + sum(min(c.latency_ms for c in s.candidates) for s in slots)
    hi = 0.2 + sum(s.candidates[0].latency_ms for s in slots)
    return Problem(problem.slots, lo + rng.uniform(0.1, 0.6) * (hi - lo), 0.2), links


def brute_force(problem: Problem, links: list[Link]) -> float:
    best = math.inf
    for picks in itertools.product(*(s.candidates for s in problem.slots)):
        choices = {s.name: c.key for s, c in zip(problem.slots, picks)}
        if math.fsum([problem.fixed_latency_ms, *(c.latency_ms for c in picks)]) > problem.budget_ms:
            continue
        if links_satisfied(choices, problem, links):
            best = min(best, math.fsum(c.score for c in picks))
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("backend", BACKENDS)
def test_linked_optimum_matches_brute_force(seed: int, backend: str) -> None:
    problem, links = chain_problem(random.Random(seed))
    expected = brute_force(problem, links)
    selection = solve(linked_problem(problem, links), backend=backend)
    assert links_satisfied(selection.choices, problem, links)
    assert selection.predicted_latency_ms <= problem.budget_ms
    assert selection.total_score == pytest.approx(expected, abs=1e-6)


def test_unlinked_optimum_can_break_the_groups() -> None:
    """Without the links the same problem mixes widths of one group (which is why links are needed)."""
    broken = 0
    for seed in range(8):
        problem, links = chain_problem(random.Random(seed))
        broken += not links_satisfied(solve(problem).choices, problem, links)
    assert broken > 0


def test_bad_links_are_errors() -> None:
    problem, links = chain_problem(random.Random(0))
    with pytest.raises(SearchError, match="does not have"):
        linked_problem(problem, [Link("zz", "g0", ())])
    with pytest.raises(SearchError, match="tags"):
        linked_problem(problem, [Link("a", "g0", ("w100",))])
    with pytest.raises(SearchError, match="does not offer"):
        linked_problem(problem, [Link("a", "g0", ("w10",) * len(problem.slots[0].candidates))])
