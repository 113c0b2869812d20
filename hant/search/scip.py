"""SCIP backend through OR-Tools' pywraplp: the same 0-1 model as CP-SAT, solved by branch and cut."""
from __future__ import annotations

import logging

from ortools.linear_solver import pywraplp

from ..errors import SearchError
from .raw import RawResult
from .scaling import ScaledProblem

log = logging.getLogger(__name__)


def solve_scip(problem: ScaledProblem, time_limit_s: float) -> RawResult:
    """Solve the integer model with SCIP (single thread, zero relative gap, so deterministic)."""
    solver = pywraplp.Solver.CreateSolver("SCIP")
    if solver is None:
        raise SearchError("this OR-Tools build has no SCIP; use backend 'cpsat' or 'cbc'")
    x = [[solver.BoolVar(f"x{s}_{c}") for c in range(len(row))] for s, row in enumerate(problem.latency)]
    for row in x:
        solver.Add(solver.Sum(row) == 1)
    knapsack = solver.Constraint(-solver.infinity(), float(problem.budget))
    objective = solver.Objective()
    for lats, scores, row in zip(problem.latency, problem.score, x):
        for lat, sc, v in zip(lats, scores, row):
            knapsack.SetCoefficient(v, float(lat))
            objective.SetCoefficient(v, float(sc))
    objective.SetMinimization()
    solver.SetTimeLimit(max(1, int(round(time_limit_s * 1000))))
    solver.SetNumThreads(1)
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 0.0)
    code = solver.Solve(params)
    names = {
        pywraplp.Solver.OPTIMAL: "OPTIMAL",
        pywraplp.Solver.FEASIBLE: "FEASIBLE",
        pywraplp.Solver.INFEASIBLE: "INFEASIBLE",
        pywraplp.Solver.UNBOUNDED: "UNBOUNDED",
        pywraplp.Solver.ABNORMAL: "ABNORMAL",
        pywraplp.Solver.NOT_SOLVED: "NOT_SOLVED",
    }
    name = names.get(code, str(code))
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        raise SearchError(f"SCIP stopped with status {name} and no selection within {time_limit_s:g} s; raise time_limit_s")
    picks = tuple(max(range(len(row)), key=lambda c: row[c].solution_value()) for row in x)
    value = objective.Value()
    optimal = code == pywraplp.Solver.OPTIMAL
    bound = value if optimal else objective.BestBound()
    log.debug("SCIP %s: objective %g, bound %g, %d ms", name, value, bound, solver.wall_time())
    return RawResult(picks, "optimal" if optimal else "feasible", float(value), float(bound), name)
