"""solve(): validate, reduce, scale, dispatch to a backend, and map its answer back to a Selection."""
from __future__ import annotations

import importlib
import logging
import math
import time
from dataclasses import replace
from typing import Callable

from ..errors import InfeasibleBudgetError, SearchError
from .problem import Problem, Selection, validate_problem
from .raw import RawResult
from .reduce import min_latency_ms, remove_dominated
from .scaling import ScaledProblem, integerize

log = logging.getLogger(__name__)

BACKENDS = ("cpsat", "scip", "cbc")
"""Solver backends by name; ``cpsat`` is the default."""

_BACKEND_FUNCTIONS = {"cpsat": "solve_cpsat", "scip": "solve_scip", "cbc": "solve_cbc"}

_MAX_REPAIRS = 3


def _backend(name: str) -> Callable[[ScaledProblem, float], RawResult]:
    """The solve function of backend ``name``, imported on first use so unused solvers cost nothing."""
    if name not in _BACKEND_FUNCTIONS:
        raise SearchError(f"unknown search backend {name!r}; choose one of {list(BACKENDS)}")
    module = importlib.import_module(f".{name}", __package__)
    return getattr(module, _BACKEND_FUNCTIONS[name])


def _total_latency(problem: Problem, picks: list[int]) -> float:
    """Fixed plus chosen latencies, correctly rounded; a selection fits when this is <= the budget."""
    return math.fsum(
        [problem.fixed_latency_ms] + [slot.candidates[i].latency_ms for slot, i in zip(problem.slots, picks)]
    )


def _total_score(problem: Problem, picks: list[int]) -> float:
    return math.fsum(slot.candidates[i].score for slot, i in zip(problem.slots, picks))


def _best_score_picks(problem: Problem) -> list[int]:
    """Per slot the lowest-score candidate, ties to the faster one, then to the earlier one."""
    return [
        min(range(len(slot.candidates)), key=lambda i, c=slot.candidates: (c[i].score, c[i].latency_ms, i))
        for slot in problem.slots
    ]


def _solve_integer(
    scaled: ScaledProblem, backend: Callable[[ScaledProblem, float], RawResult], name: str, time_limit_s: float
) -> RawResult:
    """Run the backend; if a MIP tolerance let the rounded picks overshoot the integer budget, tighten and rerun."""
    model = scaled
    for _ in range(_MAX_REPAIRS + 1):
        raw = backend(model, time_limit_s)
        used = sum(row[p] for row, p in zip(scaled.latency, raw.picks))
        if used <= scaled.budget:
            return raw
        log.warning("%s picks use %d > %d latency units (solver tolerance); re-solving tighter", name, used, scaled.budget)
        model = replace(model, budget=model.budget - (used - scaled.budget))
    raise SearchError(f"backend {name!r} kept returning selections over the budget; use backend 'cpsat'")


def solve(problem: Problem, *, backend: str = "cpsat", time_limit_s: float = 10.0) -> Selection:
    """Pick one candidate per slot minimising the total score with fixed + sum(latency) <= budget.

    A selection fits when ``math.fsum([fixed, *latencies]) <= budget`` (the correctly rounded sum, reported
    as ``predicted_latency_ms``); solver answers even fit in exact rational arithmetic, unless the budget is
    within rounding (half an ulp) of the minimum latency.
    Raises SearchError for a malformed problem, an unknown backend or a solver that finds nothing in time,
    and InfeasibleBudgetError when even the fastest candidates exceed the budget. Equal problems give
    equal answers: reductions keep the first of exact duplicates and the solvers run deterministically.
    """
    solve_backend = _backend(backend)  # before the clock: importing a solver is a one-time cost
    start = time.perf_counter()
    validate_problem(problem)
    if not (isinstance(time_limit_s, (int, float)) and math.isfinite(time_limit_s) and time_limit_s > 0):
        raise SearchError(f"time_limit_s={time_limit_s!r} must be a positive number of seconds")

    fastest = min_latency_ms(problem)
    if fastest > problem.budget_ms:
        raise InfeasibleBudgetError(problem.budget_ms, fastest)

    reduced = remove_dominated(problem)
    extras: dict = {
        "candidates": sum(len(s.candidates) for s in problem.slots),
        "candidates_after_dominance": sum(len(s.candidates) for s in reduced.slots),
        "min_latency_ms": fastest,
    }

    best = _best_score_picks(reduced)
    if _total_latency(reduced, best) <= reduced.budget_ms:
        # The per-slot best scores already fit: that is the optimum, no solver needed.
        picks, status, gap = best, "optimal", 0.0
        extras["solved_by"] = "unconstrained optimum fits the budget"
    else:
        scaled = integerize(reduced)
        extras.update(
            candidates_in_model=sum(len(r) for r in scaled.index),
            latency_units_per_ms=scaled.lat_scale,
            score_units_per_point=scaled.score_scale,
            budget_units=scaled.budget,
        )
        backend_start = time.perf_counter()
        raw = _solve_integer(scaled, solve_backend, backend, time_limit_s)
        extras.update(
            backend_seconds=time.perf_counter() - backend_start,
            solver_status=raw.solver_status,
            objective_units=raw.objective,
            bound_units=raw.bound,
        )
        picks = [scaled.index[s][p] for s, p in enumerate(raw.picks)]
        status = raw.status
        gap = 0.0
        if status != "optimal":
            primal = _total_score(reduced, picks)
            dual = scaled.score_offset + raw.bound / scaled.score_scale
            gap = max(0.0, primal - dual) / max(abs(primal), 1e-9)

    selection = Selection(
        choices={slot.name: slot.candidates[i].key for slot, i in zip(reduced.slots, picks)},
        predicted_latency_ms=_total_latency(reduced, picks),
        total_score=_total_score(reduced, picks),
        status=status,
        solve_seconds=time.perf_counter() - start,
        gap=gap,
        backend=backend,
        budget_ms=problem.budget_ms,
        extras=extras,
    )
    log.info(
        "%s: %s selection, score %.6g, latency %.4f / %.4f ms, %.3f s",
        backend, status, selection.total_score, selection.predicted_latency_ms, problem.budget_ms,
        selection.solve_seconds,
    )
    return selection
