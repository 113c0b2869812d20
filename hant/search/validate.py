"""Validation of a Problem: every malformed part raises a SearchError naming its slot, candidate and field.

Numbers are checked in bulk (types, then finiteness and sign with numpy); only when the bulk check
fails does a per-candidate pass run to name the first offender, so large problems validate in
milliseconds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from ..errors import SearchError
from .problem import LATENCY, Problem

_PLAIN_NUMBERS = {float, int}


@dataclass(frozen=True)
class Columns:
    """Every candidate's numbers, slot after slot, as float64 arrays (validated)."""

    sizes: np.ndarray
    """Candidates per slot."""
    latency: np.ndarray
    score: np.ndarray
    resources: np.ndarray
    """Shape (number of limits, candidates): the limited resources, in the order of ``problem.limits``."""


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(value: object, where: str, name: str, *, nonnegative: bool) -> float:
    """Return ``value`` as a float, or raise a SearchError naming ``where`` and ``name``."""
    if not is_number(value):
        raise SearchError(f"{where} has {name}={value!r}; it must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise SearchError(f"{where} has {name}={number}; it must be a finite number")
    if nonnegative and number < 0:
        raise SearchError(f"{where} has {name}={number}; it must be >= 0")
    return number


def slot_where(index: int, name: object) -> str:
    return f"slot {name!r}" if isinstance(name, str) and name else f"slot {index}"


def _check_header(problem: Problem) -> None:
    check_number(problem.budget_ms, "the problem", "budget_ms", nonnegative=True)
    check_number(problem.fixed_latency_ms, "the problem", "fixed_latency_ms", nonnegative=False)  # a calibration offset may be negative
    k = problem.max_changed
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 0):
        raise SearchError(f"the problem has max_changed={k!r}; it must be a whole number >= 0 (or absent)")
    seen: set[str] = set()
    for i, lim in enumerate(problem.limits):
        where = f"limit {i}"
        if not isinstance(lim.name, str) or not lim.name:
            raise SearchError(f"{where} has name={lim.name!r}; resource names must be non-empty strings")
        if lim.name == LATENCY:
            raise SearchError(f"{where} limits {LATENCY!r}; the latency limit is the problem's budget_ms")
        if lim.name in seen:
            raise SearchError(f"{where} limits {lim.name!r} a second time; give one limit per resource")
        seen.add(lim.name)
        check_number(lim.limit, f"{where} ({lim.name!r})", "limit", nonnegative=True)
        check_number(lim.fixed, f"{where} ({lim.name!r})", "fixed", nonnegative=True)
    if len(problem.slots) == 0:
        raise SearchError("the problem has no slots; give at least one slot with candidates")


def _check_keys(problem: Problem) -> None:
    get_key = attrgetter("key")
    all_keys = [get_key(c) for slot in problem.slots for c in slot.candidates]
    plain = set(map(type, all_keys)) == {str}
    at = 0
    seen_slots: set[str] = set()
    for s, slot in enumerate(problem.slots):
        if not isinstance(slot.name, str) or not slot.name:
            raise SearchError(f"slot {s} has name={slot.name!r}; slot names must be non-empty strings")
        where = slot_where(s, slot.name)
        if slot.name in seen_slots:
            raise SearchError(f"{where} appears twice; slot names must be unique")
        seen_slots.add(slot.name)
        if len(slot.candidates) == 0:
            raise SearchError(f"{where} has no candidates; give it at least its 'keep' candidate")
        keys = all_keys[at : at + len(slot.candidates)]
        at += len(slot.candidates)
        if plain and len(set(keys)) == len(keys) and "" not in keys:
            continue
        seen_keys: set[str] = set()
        for c, key in enumerate(keys):
            if not isinstance(key, str) or not key:
                raise SearchError(f"{where} candidate {c} has key={key!r}; candidate keys must be non-empty strings")
            if key in seen_keys:
                raise SearchError(f"{where} has candidate key {key!r} twice; keys must be unique per slot")
            seen_keys.add(key)


def _explain_numbers(problem: Problem) -> None:
    """The slow pass: raise for the first malformed number (returns when all are fine after all)."""
    names = [lim.name for lim in problem.limits]
    for s, slot in enumerate(problem.slots):
        where = slot_where(s, slot.name)
        for c, cand in enumerate(slot.candidates):
            cwhere = f"{where} candidate {c} ({cand.key!r})"
            check_number(cand.latency_ms, cwhere, "latency_ms", nonnegative=True)
            check_number(cand.score, cwhere, "score", nonnegative=False)
            if names and not isinstance(cand.resources, Mapping):
                raise SearchError(f"{cwhere} has resources={cand.resources!r}; it must map resource names to numbers")
            for name in names:
                if name not in cand.resources:
                    raise SearchError(f"{cwhere} has no resource {name!r}; every candidate needs each limited resource")
                check_number(cand.resources[name], cwhere, f"resources[{name!r}]", nonnegative=True)


def _bulk(values: list, *, nonnegative: bool) -> np.ndarray | None:
    """``values`` as float64 when all are finite plain numbers (and >= 0 if asked); else None."""
    if not set(map(type, values)) <= _PLAIN_NUMBERS:
        return None
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all() or (nonnegative and (array < 0).any()):
        return None
    return array


def _numbers(problem: Problem) -> Columns | None:
    cands = [c for slot in problem.slots for c in slot.candidates]
    latency = _bulk(list(map(attrgetter("latency_ms"), cands)), nonnegative=True)
    score = _bulk(list(map(attrgetter("score"), cands)), nonnegative=False)
    if latency is None or score is None:
        return None
    rows = []
    for lim in problem.limits:
        try:
            row = _bulk([c.resources[lim.name] for c in cands], nonnegative=True)
        except (KeyError, TypeError):
            return None
        if row is None:
            return None
        rows.append(row)
    sizes = np.fromiter((len(slot.candidates) for slot in problem.slots), dtype=np.int64, count=len(problem.slots))
    resources = np.vstack(rows) if rows else np.zeros((0, len(cands)))
    return Columns(sizes, latency, score, resources)


def _coerced(problem: Problem) -> Columns:
    """Columns of a problem whose numbers passed the slow pass but not the bulk one (numpy scalars, say)."""
    cands = [c for slot in problem.slots for c in slot.candidates]
    return Columns(
        np.array([len(slot.candidates) for slot in problem.slots], dtype=np.int64),
        np.array([float(c.latency_ms) for c in cands]),
        np.array([float(c.score) for c in cands]),
        np.array([[float(c.resources[lim.name]) for c in cands] for lim in problem.limits]).reshape(
            len(problem.limits), len(cands)
        ),
    )


def checked_columns(problem: Problem) -> Columns:
    """Validate ``problem`` and return its numbers; raise SearchError naming the first malformed field."""
    _check_header(problem)
    _check_keys(problem)
    columns = _numbers(problem)
    if columns is None:
        _explain_numbers(problem)
        columns = _coerced(problem)
    return columns


def validate_problem(problem: Problem) -> None:
    """Raise SearchError naming the slot and field of the first malformed part of ``problem``."""
    checked_columns(problem)
