"""Plain-data types of the selection problem: per-slot candidate costs in, a Selection out."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

LATENCY = "latency_ms"
"""Name of the latency row in messages and in a Selection's totals."""
CHANGED = "changed_slots"
"""Name of the ``max_changed`` row: the number of changed slots (see :func:`changed_slots`)."""


@dataclass(frozen=True)
class CandidateCost:
    """One candidate of one slot as the search sees it: its key, latency and score (lower is better).

    ``resources`` holds further per-candidate amounts (``params``, ``flops``, ``latency2_ms``, ...) that
    a Problem may limit; a candidate needs a value for every limited resource.
    """

    key: str
    latency_ms: float
    score: float
    resources: Mapping[str, float] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SlotChoices:
    """The candidates the search may choose from for one slot (the first is "keep" by convention)."""

    name: str
    candidates: tuple[CandidateCost, ...]


@dataclass(frozen=True)
class ResourceLimit:
    """An extra knapsack row: ``fixed + sum of the chosen candidates' resources[name] <= limit``."""

    name: str
    limit: float
    fixed: float = 0.0


@dataclass(frozen=True)
class Problem:
    """Multiple-choice knapsack: one candidate per slot, minimise total score under a latency budget.

    Optional side constraints: ``limits`` on other resources, and ``max_changed``, the most slots whose
    choice may differ from their first candidate.
    """

    slots: tuple[SlotChoices, ...]
    budget_ms: float
    fixed_latency_ms: float = 0.0
    """Latency added to every selection. It may be negative: a latency table's calibrated term for the
    part outside the slots is below zero where the calibration's offset exceeds that part."""
    limits: tuple[ResourceLimit, ...] = ()
    max_changed: int | None = None


@dataclass
class Selection:
    """The search's answer: slot name → candidate key, with what it predicts and how it was found."""

    choices: dict[str, str]
    predicted_latency_ms: float
    total_score: float
    status: str
    """``optimal`` or ``feasible`` (time limit reached with a solution)."""
    solve_seconds: float
    gap: float
    """Relative optimality gap ``(total_score - proven lower bound) / |total_score|``; 0.0 when proven optimal."""
    backend: str
    budget_ms: float
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Selection":
        return cls(**d)


def changed_slots(problem: Problem, choices: Mapping[str, str]) -> int:
    """How many slots are changed: their choice is not their first candidate (in a zoo's problem, the
    teacher's own block in the target's precision, ``keep``). The one meaning of a changed slot, for
    ``max_changed``, the search's answers and the report."""
    return sum(1 for slot in problem.slots if slot.candidates and choices.get(slot.name) != slot.candidates[0].key)
