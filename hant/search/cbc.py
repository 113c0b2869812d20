"""CBC backend through PuLP's bundled binary: the same 0-1 model, written as MPS and solved by CBC."""
from __future__ import annotations

import logging
import re
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import pulp

from ..errors import SearchError
from .raw import ModelInfeasible, RawResult
from .scaling import ScaledProblem

log = logging.getLogger(__name__)

_LOWER_BOUND = re.compile(r"^Lower bound:\s*(\S+)", re.MULTILINE)


def _lower_bound(log_text: str, fallback: float) -> float:
    """CBC's proven lower bound from its log (PuLP does not expose it); ``fallback`` when absent.

    All score units are >= 0, so 0 is always a valid fallback.
    """
    found = _LOWER_BOUND.findall(log_text)
    try:
        return float(found[-1]) if found else fallback
    except ValueError:
        return fallback


def _variable_factory(prob: pulp.LpProblem) -> Callable[[str], pulp.LpVariable]:
    """Binary-variable constructor: ``prob.add_variable`` where PuLP has it (3.x+), else ``LpVariable``."""
    if hasattr(prob, "add_variable"):
        return lambda name: prob.add_variable(name, cat=pulp.LpBinary)
    return lambda name: pulp.LpVariable(name, cat=pulp.LpBinary)


def _cbc_command(**options: object) -> pulp.LpSolver:
    """PuLP's bundled CBC (deprecated in PuLP 3.x, hence the muted warning); COIN_CMD where it is gone."""
    bundled = getattr(pulp, "PULP_CBC_CMD", None)
    if bundled is None:
        return pulp.COIN_CMD(**options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bundled(**options)


def solve_cbc(
    problem: ScaledProblem, time_limit_s: float, hint: tuple[int, ...] | None = None, lower_bound: int = 0
) -> RawResult:
    """Solve the integer model with CBC (single thread, zero relative gap, messages off).

    ``hint`` is passed as CBC's warm start; ``lower_bound`` is not passed (CBC's own LP bound is at
    least as strong).
    """
    prob = pulp.LpProblem("hant_selection", pulp.LpMinimize)
    new_var = _variable_factory(prob)
    x = [[new_var(f"x_{s}_{c}") for c in range(len(row))] for s, row in enumerate(problem.score)]
    prob += pulp.LpAffineExpression(
        [(v, int(sc)) for scores, row in zip(problem.score, x) for sc, v in zip(scores.tolist(), row)]
    ), "score"
    for s, row in enumerate(x):
        prob += pulp.LpAffineExpression([(v, 1) for v in row]) == 1, f"one_{s}"
    for r, cap in enumerate(problem.caps):
        prob += pulp.LpAffineExpression(
            [(v, int(w)) for ws, row in zip(problem.weights, x) for w, v in zip(ws[r].tolist(), row)]
        ) <= cap, f"row_{r}"
    if hint is not None:
        for row, pick in zip(x, hint):
            for c, v in enumerate(row):
                v.setInitialValue(1 if c == pick else 0)

    with tempfile.TemporaryDirectory(prefix="hant_cbc_") as tmp:
        log_path = Path(tmp) / "cbc.log"
        cmd = _cbc_command(
            msg=False, timeLimit=float(time_limit_s), gapRel=0.0, threads=1, logPath=str(log_path),
            warmStart=hint is not None,
        )
        try:
            prob.solve(cmd)
        except pulp.PulpSolverError as exc:
            raise SearchError(f"CBC failed to run ({exc}); use backend 'cpsat' instead") from exc
        log_text = log_path.read_text() if log_path.exists() else ""

    name = f"{pulp.LpStatus.get(prob.status, prob.status)}/{pulp.LpSolution.get(prob.sol_status, prob.sol_status)}"
    if prob.status == pulp.LpStatusInfeasible:
        raise ModelInfeasible(name)
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        raise SearchError(f"CBC stopped with status {name} and no selection within {time_limit_s:g} s; raise time_limit_s")
    picks = tuple(max(range(len(row)), key=lambda c: row[c].varValue or 0.0) for row in x)
    value = float(pulp.value(prob.objective) or 0.0)
    optimal = prob.sol_status == pulp.LpSolutionOptimal
    bound = value if optimal else min(value, _lower_bound(log_text, fallback=0.0))
    log.debug("CBC %s: objective %g, bound %g", name, value, bound)
    return RawResult(picks, "optimal" if optimal else "feasible", value, bound, name)
