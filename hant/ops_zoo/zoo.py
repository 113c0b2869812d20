"""Assemble the zoo: for every slot, candidate 0 keeps the teacher's block, then every family's fits."""
from __future__ import annotations

import inspect
import logging
from typing import Mapping

from torch import nn

from ..errors import ZooError
from ..slots import Slot, get_submodule
from .registry import CandidateFamily, get_family, list_families
from .spec import CandidateSpec, SlotSignature

log = logging.getLogger(__name__)


def _check_options(family: CandidateFamily, options: Mapping) -> None:
    params = inspect.signature(family.candidates).parameters
    allowed = [n for n in params if n not in ("self", "slot", "teacher_block")]
    for name in options:
        if name not in allowed:
            raise ZooError(f"candidate family {family.name!r} has no option {name!r}; its options are {allowed}")


UNREADABLE = (AttributeError, KeyError, IndexError, NotImplementedError)
"""What a family's inspection of a block raises when the block holds a layer type it does not know."""


def _skip(name: str, slot: Slot, block: nn.Module, error: Exception, skipped: set | None) -> None:
    """Say once per family and block type that the family cannot handle such blocks."""
    what = (name, type(block).__name__)
    if skipped is None or what not in skipped:
        log.warning(
            "family %r skipped for %s blocks it cannot read (first: slot %r, %s: %s)",
            name, what[1], slot.name, type(error).__name__, error,
        )
    if skipped is not None:
        skipped.add(what)


def slot_candidates(
    slot: Slot, teacher_block: nn.Module, families: Mapping[str, Mapping], skipped: set | None = None
) -> list[CandidateSpec]:
    """The candidate specs of one slot: ``keep`` first, then each named family's, without duplicates.

    A family that cannot inspect the block (it holds a layer type the family does not know) is
    skipped for it, with one warning per family and block type (``skipped`` remembers them).
    """
    signature = SlotSignature.of(slot)
    specs = [CandidateSpec("keep", {}, signature)]
    seen = {specs[0].key}
    for name, options in families.items():
        if name == "keep":
            continue
        family = get_family(name)
        options = dict(options or {})
        _check_options(family, options)
        try:
            if not family.applies_to(teacher_block):
                continue
        except UNREADABLE as e:
            _skip(name, slot, teacher_block, e, skipped)
            continue
        if family.teacher_derived:
            options["teacher_block"] = teacher_block
        try:
            param_sets = family.candidates(slot, **options)
        except UNREADABLE as e:
            _skip(name, slot, teacher_block, e, skipped)
            continue
        except (TypeError, ValueError) as e:
            options.pop("teacher_block", None)
            raise ZooError(f"candidate family {name!r} rejected its options {options}: {e}") from e
        for params in param_sets:
            spec = CandidateSpec(name, params, signature)
            if spec.key not in seen:
                seen.add(spec.key)
                specs.append(spec)
    return specs


def build_zoo(teacher: nn.Module, slots: list[Slot], families: Mapping[str, Mapping]) -> dict[str, list[CandidateSpec]]:
    """Slot name → its candidate specs, for every slot of the teacher."""
    skipped: set = set()
    return {slot.name: slot_candidates(slot, get_submodule(teacher, slot.path), families, skipped) for slot in slots}


def zoo_to_json(zoo: Mapping[str, list[CandidateSpec]]) -> dict:
    return {name: [spec.to_dict() for spec in specs] for name, specs in zoo.items()}


def zoo_from_json(d: Mapping) -> dict[str, list[CandidateSpec]]:
    return {name: [CandidateSpec.from_dict(s) for s in specs] for name, specs in d.items()}


def default_families() -> dict[str, dict]:
    """Every registered family (plugins included) that is on by default, with its default options;
    ``keep`` is implied."""
    return {name: {} for name in list_families() if name != "keep" and get_family(name).by_default}
