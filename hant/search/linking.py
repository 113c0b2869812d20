"""Linking constraints: slots whose choices must agree on a shared option (a coupled channel group).

Pruning a residual stream's width changes every block on that stream at once. Such a stream is a
*group slot* whose candidates are its options (widths), and every slot touching it carries, per
candidate, the option that candidate assumes (its *tag*). A ``Link`` requires a slot's chosen
candidate to carry the group slot's chosen option.

With exactly one candidate per slot, "slot s picks a candidate tagged o" implies "group g picks o"
for every option o is the same as equality, and the implication is the linear row

    sum_{i: tag_i = o} x[s, i] + sum_{o' != o} x[g, o'] <= 1,

whose coefficients are 0 or 1. ``linked_problem`` adds one such row per link and option as a
``ResourceLimit``, so every backend, the dominance reduction and the presolve solve linked
problems unchanged (candidates with different tags differ on some row and never dominate each other).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import SearchError
from .problem import Problem, ResourceLimit, SlotChoices

__all__ = ["Link", "link_row_name", "linked_problem", "links_satisfied"]


@dataclass(frozen=True)
class Link:
    """Slot ``slot``'s candidate ``i`` requires group slot ``group`` to choose the candidate keyed ``tags[i]``."""

    slot: str
    group: str
    tags: tuple[str, ...]


def link_row_name(link: Link, option: str) -> str:
    """Name of the resource row that ties ``link.slot`` to option ``option`` of ``link.group``."""
    return f"link[{link.slot}|{link.group}={option}]"


def _check(problem: Problem, links: Sequence[Link]) -> dict[str, SlotChoices]:
    by_name = {s.name: s for s in problem.slots}
    for link in links:
        for name in (link.slot, link.group):
            if name not in by_name:
                raise SearchError(f"a link names slot {name!r}, which the problem does not have")
        if link.slot == link.group:
            raise SearchError(f"slot {link.slot!r} is linked to itself")
        n = len(by_name[link.slot].candidates)
        if len(link.tags) != n:
            raise SearchError(f"the link of {link.slot!r} to {link.group!r} has {len(link.tags)} tags for {n} candidates")
        options = {c.key for c in by_name[link.group].candidates}
        unknown = sorted(set(link.tags) - options)
        if unknown:
            raise SearchError(f"slot {link.slot!r} is tagged with {unknown}, which group slot {link.group!r} does not offer")
    return by_name


def linked_problem(problem: Problem, links: Sequence[Link]) -> Problem:
    """``problem`` with one 0/1 resource row (limit 1) per link and option of its group slot."""
    _check(problem, links)
    rows: dict[str, dict[tuple[str, int], float]] = {}
    for link in links:
        group = next(s for s in problem.slots if s.name == link.group)
        for option in dict.fromkeys(c.key for c in group.candidates):
            coeff: dict[tuple[str, int], float] = {}
            for i, tag in enumerate(link.tags):
                if tag == option:
                    coeff[(link.slot, i)] = 1.0
            for i, cand in enumerate(group.candidates):
                if cand.key != option:
                    coeff[(link.group, i)] = 1.0
            rows[link_row_name(link, option)] = coeff
    slots = []
    for slot in problem.slots:
        cands = []
        for i, cand in enumerate(slot.candidates):
            extra = {name: coeff.get((slot.name, i), 0.0) for name, coeff in rows.items()}
            cands.append(replace(cand, resources={**cand.resources, **extra}))
        slots.append(SlotChoices(slot.name, tuple(cands)))
    limits = problem.limits + tuple(ResourceLimit(name, 1.0) for name in rows)
    return replace(problem, slots=tuple(slots), limits=limits)


def links_satisfied(choices: Mapping[str, str], problem: Problem, links: Sequence[Link]) -> bool:
    """Whether a selection (slot name → key) picks, in every linked slot, a candidate whose tag is
    the option its group slot chose."""
    by_name = _check(problem, links)
    for link in links:
        keys = [c.key for c in by_name[link.slot].candidates]
        i = keys.index(choices[link.slot])
        if link.tags[i] != choices[link.group]:
            return False
    return True
