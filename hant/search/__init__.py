"""Candidate selection: one candidate per slot, least total score under a latency budget (an integer program)."""
from __future__ import annotations

from .jsonform import problem_from_dict, problem_to_dict
from .problem import CandidateCost, Problem, ResourceLimit, Selection, SlotChoices
from .solve import BACKENDS, solve
from .validate import validate_problem

__all__ = [
    "BACKENDS",
    "CandidateCost",
    "Problem",
    "ResourceLimit",
    "Selection",
    "SlotChoices",
    "problem_from_dict",
    "problem_to_dict",
    "solve",
    "validate_problem",
]
