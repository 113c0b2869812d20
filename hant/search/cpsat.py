"""CP-SAT backend (OR-Tools): boolean x[s, c], exactly one per slot, one knapsack per row, minimise score."""
from __future__ import annotations

import logging

from ortools.sat.python import cp_model

from ..errors import SearchError
from .raw import ModelInfeasible, RawResult
from .scaling import ScaledProblem

log = logging.getLogger(__name__)

NUM_WORKERS = 1
"""One search worker: deterministic, and the fastest setting measured on these knapsacks with 2 cores
(on whole 55 x 197 models: ~0.05 s with 1 worker, ~0.09 s with 2, ~0.4 s with 8; the deterministic
multi-worker ``interleave_search`` mode took 3-5 s). After the presolve the models are far smaller
still. Parallel non-interleaved workers may return a different one of several tied optima from run
to run."""


def solve_cpsat(
    problem: ScaledProblem, time_limit_s: float, hint: tuple[int, ...] | None = None, lower_bound: int = 0
) -> RawResult:
    """Solve the integer model with CP-SAT (one worker, fixed seed: deterministic up to the time limit).

    ``hint`` (one position per slot) seeds the search; ``lower_bound`` (score units, proven elsewhere)
    is added as a redundant constraint on the objective.
    """
    model = cp_model.CpModel()
    x = [[model.new_bool_var(f"x{s}_{c}") for c in range(len(row))] for s, row in enumerate(problem.score)]
    for row in x:
        model.add_exactly_one(row)
    flat = [v for row in x for v in row]
    for r, cap in enumerate(problem.caps):
        coefs = [int(u) for w in problem.weights for u in w[r].tolist()]
        model.add(cp_model.LinearExpr.weighted_sum(flat, coefs) <= cap)
    objective = cp_model.LinearExpr.weighted_sum(flat, [int(u) for p in problem.score for u in p.tolist()])
    model.minimize(objective)
    if lower_bound > 0:
        model.add(objective >= int(lower_bound))
    if hint is None:
        # Per row the all-cheapest selection costs 0 units; with one row it always fits: hint it.
        hint = tuple(int(w[0].argmin()) for w in problem.weights) if len(problem.caps) == 1 else None
    if hint is not None:
        for row, pick in zip(x, hint):
            for c, v in enumerate(row):
                model.add_hint(v, c == pick)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = NUM_WORKERS
    solver.parameters.random_seed = 0
    solver.parameters.log_search_progress = False
    code = solver.solve(model)
    name = solver.status_name(code)
    if code == cp_model.INFEASIBLE:
        raise ModelInfeasible(name)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise SearchError(
            f"CP-SAT stopped with status {name} and no selection within {time_limit_s:g} s; raise time_limit_s"
        )
    picks = tuple(next(c for c, v in enumerate(row) if solver.boolean_value(v)) for row in x)
    value = float(solver.objective_value)
    optimal = code == cp_model.OPTIMAL
    bound = value if optimal else float(solver.best_objective_bound)
    log.debug("CP-SAT %s: objective %g, bound %g, %.3f s", name, value, bound, solver.wall_time)
    return RawResult(picks, "optimal" if optimal else "feasible", value, bound, name)
