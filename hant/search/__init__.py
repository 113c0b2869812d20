"""Candidate selection: one candidate per slot, least total score under a latency budget (an integer program)."""
from __future__ import annotations

from .jsonform import problem_from_dict, problem_to_dict
from .problem import CHANGED, CandidateCost, Problem, ResourceLimit, Selection, SlotChoices, changed_slots
from .solve import BACKENDS, solve
from .validate import validate_problem

__all__ = [
    "BACKENDS",
    "CHANGED",
    "CandidateCost",
    "Problem",
    "ResourceLimit",
    "Selection",
    "SlotChoices",
    "changed_slots",
    "problem_from_dict",
    "problem_to_dict",
    "solve",
    "validate_problem",
]
