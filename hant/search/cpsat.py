"""CP-SAT backend (OR-Tools): boolean x[s, c], exactly one per slot, latency knapsack, minimise score."""
from __future__ import annotations

import logging

from ortools.sat.python import cp_model

from ..errors import SearchError
from .raw import RawResult
from .scaling import ScaledProblem

log = logging.getLogger(__name__)

NUM_WORKERS = 1
"""One search worker: deterministic, and the fastest setting measured on these knapsacks with 2 cores
(55 slots x 197 candidates: ~0.05 s with 1 worker, ~0.09 s with 2, ~0.4 s with 8; the deterministic
multi-worker ``interleave_search`` mode took 3-5 s). Parallel non-interleaved workers may return a
different one of several tied optima from run to run."""


def solve_cpsat(problem: ScaledProblem, time_limit_s: float) -> RawResult:
    """Solve the integer model with CP-SAT (one worker, fixed seed: deterministic up to the time limit)."""
    model = cp_model.CpModel()
    x = [[model.new_bool_var(f"x{s}_{c}") for c in range(len(row))] for s, row in enumerate(problem.latency)]
    for row in x:
        model.add_exactly_one(row)
    flat = [v for row in x for v in row]
    latency = cp_model.LinearExpr.weighted_sum(flat, [lat for row in problem.latency for lat in row])
    model.add(latency <= problem.budget)
    model.minimize(cp_model.LinearExpr.weighted_sum(flat, [sc for row in problem.score for sc in row]))
    # The all-fastest selection (latency 0 units in every slot) is always feasible: hint it.
    for lats, row in zip(problem.latency, x):
        fastest = min(range(len(lats)), key=lats.__getitem__)
        for c, v in enumerate(row):
            model.add_hint(v, c == fastest)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = NUM_WORKERS
    solver.parameters.random_seed = 0
    solver.parameters.log_search_progress = False
    code = solver.solve(model)
    name = solver.status_name(code)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise SearchError(
            f"CP-SAT stopped with status {name} and no selection within {time_limit_s:g} s; raise time_limit_s"
        )
    picks = tuple(next(c for c, v in enumerate(row) if solver.boolean_value(v)) for row in x)
    objective = float(solver.objective_value)
    optimal = code == cp_model.OPTIMAL
    bound = objective if optimal else float(solver.best_objective_bound)
    log.debug("CP-SAT %s: objective %g, bound %g, %.3f s", name, objective, bound, solver.wall_time)
    return RawResult(picks, "optimal" if optimal else "feasible", objective, bound, name)
