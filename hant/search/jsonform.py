"""The JSON form of a Problem (``hant search --problem FILE``); a malformed field raises a SearchError naming it.

    {"slots": [{"name": ..., "candidates": [{"key": ..., "latency_ms": ..., "score": ...,
                                             "resources": {"params": ...}}, ...]}, ...],
     "budget_ms": ..., "fixed_latency_ms": ...,
     "limits": [{"name": "params", "limit": ..., "fixed": ...}], "max_changed": K}

``fixed_latency_ms``, ``resources``, ``limits``, ``fixed`` and ``max_changed`` are optional.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import SearchError
from .problem import CandidateCost, Problem, ResourceLimit, SlotChoices
from .validate import slot_where, validate_problem

_PROBLEM_FIELDS = ("slots", "budget_ms", "fixed_latency_ms", "limits", "max_changed")
_SLOT_FIELDS = ("name", "candidates")
_CANDIDATE_FIELDS = ("key", "latency_ms", "score", "resources")
_LIMIT_FIELDS = ("name", "limit", "fixed")


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


def _require_list(value: object, where: str, field_name: str) -> Sequence:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise SearchError(f"{where} has {field_name!r} of type {type(value).__name__}; it must be a list")
    return value


def _float(value: object) -> object:
    """Numbers become floats; anything else is left for validation to name."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _candidate_from_dict(value: object, where: str) -> CandidateCost:
    d = _require_mapping(value, where, _CANDIDATE_FIELDS)
    key = _require(d, "key", where)
    latency = _require(d, "latency_ms", where)
    score = _require(d, "score", where)
    resources = d.get("resources", {})
    if not isinstance(resources, Mapping):
        raise SearchError(f"{where} has 'resources' of type {type(resources).__name__}; it must be an object")
    return CandidateCost(
        key=key,  # type: ignore[arg-type]
        latency_ms=_float(latency),  # type: ignore[arg-type]
        score=_float(score),  # type: ignore[arg-type]
        resources={str(k): _float(v) for k, v in resources.items()},  # type: ignore[misc]
    )


def _slot_from_dict(value: object, index: int) -> SlotChoices:
    name = value.get("name") if isinstance(value, Mapping) else None
    where = slot_where(index, name)
    d = _require_mapping(value, where, _SLOT_FIELDS)
    name = _require(d, "name", where)
    candidates = _require_list(_require(d, "candidates", where), where, "candidates")
    return SlotChoices(
        name=name,  # type: ignore[arg-type]
        candidates=tuple(_candidate_from_dict(c, f"{where} candidate {i}") for i, c in enumerate(candidates)),
    )


def _limit_from_dict(value: object, index: int) -> ResourceLimit:
    where = f"limit {index}"
    d = _require_mapping(value, where, _LIMIT_FIELDS)
    return ResourceLimit(
        name=_require(d, "name", where),  # type: ignore[arg-type]
        limit=_float(_require(d, "limit", where)),  # type: ignore[arg-type]
        fixed=_float(d.get("fixed", 0.0)),  # type: ignore[arg-type]
    )


def problem_from_dict(d: Mapping) -> Problem:
    """Build and validate a Problem from its JSON form; a malformed field raises SearchError naming it."""
    d = _require_mapping(d, "the problem", _PROBLEM_FIELDS)
    slots = _require_list(_require(d, "slots", "the problem"), "the problem", "slots")
    limits = _require_list(d.get("limits", []), "the problem", "limits")
    problem = Problem(
        slots=tuple(_slot_from_dict(s, i) for i, s in enumerate(slots)),
        budget_ms=_float(_require(d, "budget_ms", "the problem")),  # type: ignore[arg-type]
        fixed_latency_ms=_float(d.get("fixed_latency_ms", 0.0)),  # type: ignore[arg-type]
        limits=tuple(_limit_from_dict(lim, i) for i, lim in enumerate(limits)),
        max_changed=d.get("max_changed"),
    )
    validate_problem(problem)
    return problem


def problem_to_dict(problem: Problem) -> dict:
    """The JSON form of ``problem`` (inverse of ``problem_from_dict``); optional parts only when used."""

    def candidate(c: CandidateCost) -> dict:
        out = {"key": c.key, "latency_ms": c.latency_ms, "score": c.score}
        if c.resources:
            out["resources"] = dict(c.resources)
        return out

    d: dict = {
        "slots": [{"name": s.name, "candidates": [candidate(c) for c in s.candidates]} for s in problem.slots],
        "budget_ms": problem.budget_ms,
        "fixed_latency_ms": problem.fixed_latency_ms,
    }
    if problem.limits:
        d["limits"] = [{"name": lim.name, "limit": lim.limit, "fixed": lim.fixed} for lim in problem.limits]
    if problem.max_changed is not None:
        d["max_changed"] = problem.max_changed
    return d
