"""Candidate selection: one candidate per slot, least total score under a latency budget (an integer program)."""
from __future__ import annotations

from .problem import CandidateCost, Problem, Selection, SlotChoices, problem_from_dict, problem_to_dict
from .solve import BACKENDS, solve

__all__ = [
    "BACKENDS",
    "CandidateCost",
    "Problem",
    "Selection",
    "SlotChoices",
    "problem_from_dict",
    "problem_to_dict",
    "solve",
]
