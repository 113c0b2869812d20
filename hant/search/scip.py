"""SCIP backend through OR-Tools' pywraplp: the same 0-1 model as CP-SAT, solved by branch and cut."""
from __future__ import annotations

import logging

from ortools.linear_solver import pywraplp

from ..errors import SearchError
from .raw import ModelInfeasible, RawResult
from .scaling import ScaledProblem

log = logging.getLogger(__name__)

_PARAMS = "numerics/feastol = 1e-10\nnumerics/epsilon = 1e-12\n"

_STATUS = {
    pywraplp.Solver.OPTIMAL: "OPTIMAL",
    pywraplp.Solver.FEASIBLE: "FEASIBLE",
    pywraplp.Solver.INFEASIBLE: "INFEASIBLE",
    pywraplp.Solver.UNBOUNDED: "UNBOUNDED",
    pywraplp.Solver.ABNORMAL: "ABNORMAL",
    pywraplp.Solver.NOT_SOLVED: "NOT_SOLVED",
}


def solve_scip(
    problem: ScaledProblem, time_limit_s: float, hint: tuple[int, ...] | None = None, lower_bound: int = 0
) -> RawResult:
    """Solve the integer model with SCIP (single thread, zero relative gap, so deterministic).

    ``hint`` becomes SCIP's starting solution; ``lower_bound`` is not passed (SCIP's own LP bound is
    at least as strong).
    """
    solver = pywraplp.Solver.CreateSolver("SCIP")
    if solver is None:
        raise SearchError("this OR-Tools build has no SCIP; use backend 'cpsat' or 'cbc'")
    x = [[solver.BoolVar(f"x{s}_{c}") for c in range(len(row))] for s, row in enumerate(problem.score)]
    for row in x:
        solver.Add(solver.Sum(row) == 1)
    knapsacks = [solver.Constraint(-solver.infinity(), float(cap)) for cap in problem.caps]
    objective = solver.Objective()
    for w, scores, row in zip(problem.weights, problem.score, x):
        for c, v in enumerate(row):
            for r, knapsack in enumerate(knapsacks):
                knapsack.SetCoefficient(v, float(w[r, c]))
            objective.SetCoefficient(v, float(scores[c]))
    objective.SetMinimization()
    if hint is not None:
        solver.SetHint([v for row in x for v in row], [float(c == p) for row, p in zip(x, hint) for c in range(len(row))])
    solver.SetTimeLimit(max(1, int(round(time_limit_s * 1000))))
    solver.SetNumThreads(1)
    # Capacities reach 2**30 units: SCIP's default relative feasibility tolerance (1e-6) would let a
    # selection overshoot by a thousand units. At 1e-10 it cannot overshoot by one; epsilon (which must
    # not exceed the feasibility tolerance) goes down with it.
    solver.SetSolverSpecificParametersAsString(_PARAMS)
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 0.0)
    code = solver.Solve(params)
    name = _STATUS.get(code, str(code))
    if code == pywraplp.Solver.INFEASIBLE:
        raise ModelInfeasible(name)
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        raise SearchError(f"SCIP stopped with status {name} and no selection within {time_limit_s:g} s; raise time_limit_s")
    picks = tuple(max(range(len(row)), key=lambda c: row[c].solution_value()) for row in x)
    value = objective.Value()
    optimal = code == pywraplp.Solver.OPTIMAL
    bound = value if optimal else objective.BestBound()
    log.debug("SCIP %s: objective %g, bound %g, %d ms", name, value, bound, solver.wall_time())
    return RawResult(picks, "optimal" if optimal else "feasible", float(value), float(bound), name)
