"""solve(): validate, reduce, scale, presolve, dispatch to a backend, and map its answer back to a Selection."""
from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Callable, Literal, get_args

import numpy as np

from ..errors import InfeasibleBudgetError, SearchError
from .arrays import CostTable, selection_totals, smallest_totals, tabulate
from .presolve import presolve
from .problem import CHANGED, LATENCY, Problem, Selection, changed_slots
from .raw import ModelInfeasible, RawResult
from .reduce import undominated
from .scaling import ScaledProblem, scale_table

log = logging.getLogger(__name__)

SearchBackend = Literal["cpsat", "scip", "cbc"]
"""The solvers: OR-Tools CP-SAT, OR-Tools MIP (SCIP) and PuLP (CBC)."""
BACKENDS: tuple[str, ...] = get_args(SearchBackend)
"""Solver backends by name; ``cpsat`` is the default."""

_BACKEND_FUNCTIONS = {"cpsat": "solve_cpsat", "scip": "solve_scip", "cbc": "solve_cbc"}

_MAX_REPAIRS = 3

Backend = Callable[..., RawResult]


def _backend(name: str) -> Backend:
    """The solve function of backend ``name``, imported on first use so unused solvers cost nothing."""
    if name not in _BACKEND_FUNCTIONS:
        raise SearchError(f"unknown search backend {name!r}; choose one of {list(BACKENDS)}")
    module = importlib.import_module(f".{name}", __package__)
    return getattr(module, _BACKEND_FUNCTIONS[name])


def _check_reachable(problem: Problem, table: CostTable) -> float:
    """Raise when one row alone cannot be met; return the smallest achievable latency."""
    smallest = smallest_totals(table)
    if smallest[0] > problem.budget_ms:
        raise InfeasibleBudgetError(problem.budget_ms, smallest[0])
    for name, least, limit in zip(table.row_names[1:], smallest[1:], table.limits[1:]):
        if name != CHANGED and least > limit:
            raise SearchError(
                f"no selection fits the {name} limit of {limit:.6g}; the smallest achievable {name} is "
                f"{least:.6g}, so raise the limit to at least that"
            )
    return smallest[0]


def _fits(table: CostTable, picks: np.ndarray) -> bool:
    totals, _ = selection_totals(table, picks)
    return all(t <= limit for t, limit in zip(totals, table.limits))


def _best_score_picks(table: CostTable, kept: list[np.ndarray]) -> np.ndarray:
    """Per slot the lowest-score kept candidate, ties to the faster one, then to the earlier one."""
    return np.array(
        [idx[np.lexsort((idx, table.weights[0, idx], table.score[idx]))[0]] for idx in kept], dtype=np.int64
    )


def _start_positions(scaled: ScaledProblem, problem: Problem, hint: Mapping[str, str]) -> np.ndarray | None:
    """A previous selection (slot name → key) as positions in the integer model; None if any is not there."""
    picks = []
    for s, slot in enumerate(problem.slots):
        key = hint.get(slot.name)
        pos = next((i for i, c in enumerate(slot.candidates) if c.key == key), None)
        where = np.flatnonzero(scaled.index[s] == pos) if pos is not None else []
        if len(where) == 0:
            log.debug("warm start ignored: slot %r's %r is not in the reduced model", slot.name, key)
            return None
        picks.append(int(where[0]))
    return np.array(picks, dtype=np.int64)


def _solve_integer(
    model: ScaledProblem, backend: Backend, name: str, time_limit_s: float, hint: tuple[int, ...] | None, lower: int
) -> RawResult:
    """Run the backend; if a MIP tolerance let the rounded picks overshoot a row, tighten that row and rerun."""
    caps = list(model.caps)
    current = model
    for _ in range(_MAX_REPAIRS + 1):
        raw = backend(current, time_limit_s, hint, lower)
        used = [sum(int(w[r, p]) for w, p in zip(model.weights, raw.picks)) for r in range(len(caps))]
        over = [u - cap for u, cap in zip(used, model.caps)]
        if max(over) <= 0:
            return raw
        log.warning("%s picks exceed the integer capacities by %s units (solver tolerance); re-solving tighter", name, over)
        caps = [c - max(o, 0) for c, o in zip(caps, over)]
        current = ScaledProblem(
            current.weights, current.score, tuple(caps), current.index, current.row_names,
            current.row_scales, current.score_scale, current.score_offset,
        )
    raise SearchError(f"backend {name!r} kept returning selections over the budget; use backend 'cpsat'")


def _infeasible_error(problem: Problem, together: str, backend: str, time_limit_s: float) -> SearchError:
    """The error for a budget and limits each met alone but not together: InfeasibleBudgetError with
    the fastest selection the limits allow where the limits can be met together, else SearchError
    with the message ``together``."""
    slowest = problem.fixed_latency_ms + sum(max(c.latency_ms for c in slot.candidates) for slot in problem.slots)
    fastest_first = replace(
        problem,
        slots=tuple(replace(slot, candidates=tuple(replace(c, score=c.latency_ms) for c in slot.candidates))
                    for slot in problem.slots),
        budget_ms=slowest + 1.0,
    )
    try:
        fastest = _select(fastest_first, backend, time_limit_s, None, True)
    except ModelInfeasible:
        return SearchError(together)
    return InfeasibleBudgetError(problem.budget_ms, fastest.predicted_latency_ms)


def solve(
    problem: Problem,
    *,
    backend: str = "cpsat",
    time_limit_s: float = 10.0,
    hint: Mapping[str, str] | None = None,
    fixing: bool = True,
) -> Selection:
    """Pick one candidate per slot minimising the total score with fixed + sum(latency) <= budget
    (and every resource limit, and at most ``max_changed`` slots off their first candidate).

    A selection fits when ``math.fsum([fixed, *latencies]) <= budget`` (the correctly rounded sum, reported
    as ``predicted_latency_ms``; likewise for each limit); solver answers even fit in exact rational
    arithmetic, unless the budget is within rounding (half an ulp) of the minimum latency. ``hint`` (a
    previous selection, slot name → key) warm-starts the search; ``fixing=False`` skips the presolve's
    reduced-cost fixing and hands the backend the whole model.
    Raises SearchError for a malformed problem, an unknown backend, limits that cannot be met together
    or a solver that finds nothing in time, and InfeasibleBudgetError when even the fastest selection
    the limits allow exceeds the budget (its latency is the error's ``min_latency_ms``). Equal
    problems give equal answers: reductions keep the first of exact duplicates and the solvers run
    deterministically.
    """
    try:
        return _select(problem, backend, time_limit_s, hint, fixing)
    except ModelInfeasible as e:
        raise _infeasible_error(problem, str(e), backend, time_limit_s) from None


def _select(problem: Problem, backend: str, time_limit_s: float, hint: Mapping[str, str] | None, fixing: bool) -> Selection:
    """:func:`solve`, raising ModelInfeasible (worded) where the rows cannot be met together."""
    solve_backend = _backend(backend)  # before the clock: importing a solver is a one-time cost
    start = time.perf_counter()
    if not (isinstance(time_limit_s, (int, float)) and math.isfinite(time_limit_s) and time_limit_s > 0):
        raise SearchError(f"time_limit_s={time_limit_s!r} must be a positive number of seconds")
    table = tabulate(problem)
    fastest = _check_reachable(problem, table)

    kept = undominated(table)
    extras: dict = {
        "candidates": len(table.score),
        "candidates_after_dominance": sum(len(k) for k in kept),
        "min_latency_ms": fastest,
    }
    best = _best_score_picks(table, kept)
    if _fits(table, best):
        # The per-slot best scores already fit: that is the optimum, no solver needed.
        flat, status, gap, lower = best, "optimal", 0.0, None
        extras["solved_by"] = "unconstrained optimum fits the budget"
    else:
        flat, status, gap, lower = _solve_model(problem, table, kept, solve_backend, backend, time_limit_s, hint, fixing, extras)

    totals, score = selection_totals(table, flat)
    extras["totals"] = dict(zip(table.row_names, totals))
    extras["lower_bound"] = score if lower is None else lower
    choices = {slot.name: slot.candidates[int(i - table.starts[s])].key for s, (slot, i) in enumerate(zip(problem.slots, flat))}
    extras[CHANGED] = changed_slots(problem, choices)
    selection = Selection(
        choices=choices,
        predicted_latency_ms=totals[0],
        total_score=score,
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


def _solve_model(
    problem: Problem,
    table: CostTable,
    kept: list[np.ndarray],
    solve_backend: Backend,
    backend: str,
    time_limit_s: float,
    hint: Mapping[str, str] | None,
    fixing: bool,
    extras: dict,
) -> tuple[np.ndarray, str, float, float]:
    """Scale, presolve and run the backend; returns flat picks, status, gap and the proven lower bound."""
    try:
        scaled = scale_table(table, kept)
    except SearchError as e:  # a slot with no candidate within every capacity
        raise ModelInfeasible(str(e)) from None
    extras.update(
        candidates_in_model=scaled.n_candidates,
        latency_units_per_ms=scaled.lat_scale,
        score_units_per_point=scaled.score_scale,
        budget_units=scaled.budget,
    )
    presolve_start = time.perf_counter()
    begin = _start_positions(scaled, problem, hint) if hint else None
    pre = presolve(scaled, start=begin, fixing=fixing)
    extras.update(
        presolve_seconds=time.perf_counter() - presolve_start,
        presolve_proved_optimal=pre.proven and pre.hint is not None,
        warm_start_used=begin is not None,
        **pre.stats,
    )
    backend_start = time.perf_counter()
    try:
        raw = _solve_integer(pre.model, solve_backend, backend, time_limit_s, pre.hint, int(pre.lower_bound))
    except ModelInfeasible:
        rows = " and ".join(("the latency budget" if n == LATENCY else f"the {n} limit") for n in table.row_names)
        raise ModelInfeasible(f"no selection satisfies {rows} together, though each alone can be met; relax one of them") from None
    objective = int(sum(int(p[c]) for p, c in zip(pre.model.score, raw.picks)))
    if pre.proven and raw.status == "optimal" and objective != pre.incumbent:
        log.warning("presolve proved %d score units optimal but %s found %d; please report this", pre.incumbent, backend, objective)
    extras.update(
        backend_seconds=time.perf_counter() - backend_start,
        solver_status=raw.solver_status,
        objective_units=objective,
        bound_units=objective if raw.status == "optimal" else min(objective, max(raw.bound, pre.lower_bound)),
    )
    flat = np.array([table.starts[s] + pre.model.index[s][p] for s, p in enumerate(raw.picks)], dtype=np.int64)
    _, score = selection_totals(table, flat)
    lower = scaled.score_offset + extras["bound_units"] / scaled.score_scale
    if raw.status == "optimal":
        return flat, "optimal", 0.0, score
    gap = max(0.0, score - lower) / max(abs(score), 1e-9)
    return flat, raw.status, gap, lower
