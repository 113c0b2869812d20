"""Plain-data types of the selection problem: per-slot candidate costs in, a Selection out."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from ..errors import SearchError


@dataclass(frozen=True)
class CandidateCost:
    """One candidate of one slot as the search sees it: its key, latency and score (lower is better)."""

    key: str
    latency_ms: float
    score: float


@dataclass(frozen=True)
class SlotChoices:
    """The candidates the search may choose from for one slot."""

    name: str
    candidates: tuple[CandidateCost, ...]


@dataclass(frozen=True)
class Problem:
    """Multiple-choice knapsack: one candidate per slot, minimise total score under a latency budget."""

    slots: tuple[SlotChoices, ...]
    budget_ms: float
    fixed_latency_ms: float = 0.0


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
    """Relative optimality gap; 0.0 when proven optimal."""
    backend: str
    budget_ms: float
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Selection":
        return cls(**d)


# --------------------------------------------------------------------------- validation and JSON form

_PROBLEM_FIELDS = ("slots", "budget_ms", "fixed_latency_ms")
_SLOT_FIELDS = ("name", "candidates")
_CANDIDATE_FIELDS = ("key", "latency_ms", "score")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(value: object, where: str, name: str, *, nonnegative: bool) -> float:
    """Return ``value`` as a float, or raise a SearchError naming ``where`` and ``name``."""
    if not _is_number(value):
        raise SearchError(f"{where} has {name}={value!r}; it must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise SearchError(f"{where} has {name}={number}; it must be a finite number")
    if nonnegative and number < 0:
        raise SearchError(f"{where} has {name}={number}; it must be >= 0")
    return number


def _slot_where(index: int, name: object) -> str:
    return f"slot {name!r}" if isinstance(name, str) and name else f"slot {index}"


def validate_problem(problem: Problem) -> None:
    """Raise SearchError naming the slot and field of the first malformed part of ``problem``."""
    _check_number(problem.budget_ms, "the problem", "budget_ms", nonnegative=True)
    _check_number(problem.fixed_latency_ms, "the problem", "fixed_latency_ms", nonnegative=True)
    if len(problem.slots) == 0:
        raise SearchError("the problem has no slots; give at least one slot with candidates")
    seen_slots: set[str] = set()
    for s, slot in enumerate(problem.slots):
        if not isinstance(slot.name, str) or not slot.name:
            raise SearchError(f"slot {s} has name={slot.name!r}; slot names must be non-empty strings")
        where = _slot_where(s, slot.name)
        if slot.name in seen_slots:
            raise SearchError(f"{where} appears twice; slot names must be unique")
        seen_slots.add(slot.name)
        if len(slot.candidates) == 0:
            raise SearchError(f"{where} has no candidates; give it at least its 'keep' candidate")
        seen_keys: set[str] = set()
        for c, cand in enumerate(slot.candidates):
            cwhere = f"{where} candidate {c}"
            if not isinstance(cand.key, str) or not cand.key:
                raise SearchError(f"{cwhere} has key={cand.key!r}; candidate keys must be non-empty strings")
            if cand.key in seen_keys:
                raise SearchError(f"{where} has candidate key {cand.key!r} twice; keys must be unique per slot")
            seen_keys.add(cand.key)
            _check_number(cand.latency_ms, f"{cwhere} ({cand.key!r})", "latency_ms", nonnegative=True)
            _check_number(cand.score, f"{cwhere} ({cand.key!r})", "score", nonnegative=False)


def _require_mapping(value: object, where: str, fields: tuple[str, ...]) -> Mapping:
    if not isinstance(value, Mapping):
        raise SearchError(f"{where} must be a JSON object with {list(fields)}, got {type(value).__name__}")
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise SearchError(f"{where} has unknown field {unknown[0]!r}; allowed fields are {list(fields)}")
    return value


def _require(mapping: Mapping, field_name: str, where: str) -> object:
    if field_name not in mapping:
        raise SearchError(f"{where} has no {field_name!r}")
    return mapping[field_name]


def _candidate_from_dict(value: object, where: str) -> CandidateCost:
    d = _require_mapping(value, where, _CANDIDATE_FIELDS)
    key = _require(d, "key", where)
    latency = _require(d, "latency_ms", where)
    score = _require(d, "score", where)
    return CandidateCost(key=key, latency_ms=latency, score=score)  # type: ignore[arg-type]


def _slot_from_dict(value: object, index: int) -> SlotChoices:
    name = value.get("name") if isinstance(value, Mapping) else None
    where = _slot_where(index, name)
    d = _require_mapping(value, where, _SLOT_FIELDS)
    name = _require(d, "name", where)
    candidates = _require(d, "candidates", where)
    if not isinstance(candidates, Sequence) or isinstance(candidates, (str, bytes)):
        raise SearchError(f"{where} has 'candidates' of type {type(candidates).__name__}; it must be a list")
    return SlotChoices(
        name=name,  # type: ignore[arg-type]
        candidates=tuple(_candidate_from_dict(c, f"{where} candidate {i}") for i, c in enumerate(candidates)),
    )


def problem_from_dict(d: Mapping) -> Problem:
    """Build and validate a Problem from its JSON form; a malformed field raises SearchError naming it."""
    d = _require_mapping(d, "the problem", _PROBLEM_FIELDS)
    slots = _require(d, "slots", "the problem")
    if not isinstance(slots, Sequence) or isinstance(slots, (str, bytes)):
        raise SearchError(f"the problem has 'slots' of type {type(slots).__name__}; it must be a list")
    budget = _require(d, "budget_ms", "the problem")
    fixed = d.get("fixed_latency_ms", 0.0)
    problem = Problem(
        slots=tuple(_slot_from_dict(s, i) for i, s in enumerate(slots)),
        budget_ms=budget,  # type: ignore[arg-type]
        fixed_latency_ms=fixed,  # type: ignore[arg-type]
    )
    validate_problem(problem)
    return Problem(
        slots=tuple(
            SlotChoices(
                name=slot.name,
                candidates=tuple(
                    CandidateCost(key=c.key, latency_ms=float(c.latency_ms), score=float(c.score))
                    for c in slot.candidates
                ),
            )
            for slot in problem.slots
        ),
        budget_ms=float(problem.budget_ms),
        fixed_latency_ms=float(problem.fixed_latency_ms),
    )


def problem_to_dict(problem: Problem) -> dict:
    """The JSON form of ``problem`` (inverse of ``problem_from_dict``)."""
    return {
        "slots": [
            {
                "name": slot.name,
                "candidates": [
                    {"key": c.key, "latency_ms": c.latency_ms, "score": c.score} for c in slot.candidates
                ],
            }
            for slot in problem.slots
        ],
        "budget_ms": problem.budget_ms,
        "fixed_latency_ms": problem.fixed_latency_ms,
    }
