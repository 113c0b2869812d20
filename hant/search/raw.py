"""What a backend hands back: one pick per slot of the ScaledProblem, plus what the solver proved."""
from __future__ import annotations

from dataclasses import dataclass


class ModelInfeasible(Exception):
    """A backend proved that no selection satisfies every row of the integer model (internal; solve() words it)."""


@dataclass(frozen=True)
class RawResult:
    """A backend's answer on the integer model (before mapping back to keys and float costs)."""

    picks: tuple[int, ...]
    """Per slot: position of the chosen candidate within the ScaledProblem's row."""
    status: str
    """``optimal`` (proven) or ``feasible`` (a limit was hit with a solution in hand)."""
    objective: float
    """Objective in score units, as the solver reports it."""
    bound: float
    """Best proven lower bound on the objective in score units (equal to ``objective`` when optimal)."""
    solver_status: str
    """The solver's own status name, for the record."""
