"""Families derived from the teacher's own block: keep it, drop it, or shrink its inner width."""
from __future__ import annotations

import copy

from torch import nn

from ...slots import Slot
from ..pruning import IMPORTANCE, block_width, prune_block, prune_plans, pruned_width
from ..registry import CandidateFamily, register_family
from ..spec import CandidateSpec


@register_family("keep")
class Keep(CandidateFamily):
    """The teacher's block unchanged: candidate 0 of every slot, exact by definition."""

    teacher_derived = True
    trainable = False

    def candidates(self, slot: Slot, teacher_block: nn.Module | None = None) -> list[dict]:
        return [{}]

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        return copy.deepcopy(teacher_block)


@register_family("identity")
class Identity(CandidateFamily):
    """Skip the block entirely, where its input and output shapes are equal."""

    trainable = False

    def candidates(self, slot: Slot) -> list[dict]:
        return [{}] if tuple(slot.in_shape) == tuple(slot.out_shape) else []

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        return nn.Identity()


@register_family("pruned")
class Pruned(CandidateFamily):
    """The teacher's block with its inner channels cut to a fraction of their width, initialised
    from the teacher's most important channels."""

    teacher_derived = True

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        widths: tuple[float, ...] = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875),
        importance: str = "l1",
        divisor: int = 8,
    ) -> list[dict]:
        """One candidate per width that gives a distinct channel count below the teacher's."""
        if importance not in IMPORTANCE:
            raise ValueError(f"unknown importance {importance!r}; choose one of {sorted(IMPORTANCE)}")
        full = [block_width(teacher_block, plan) for plan in prune_plans(teacher_block)]
        seen = {tuple(full)}
        out = []
        for w in widths:
            if not 0.0 < float(w) < 1.0:
                continue
            kept = tuple(pruned_width(c, float(w), int(divisor)) for c in full)
            if kept not in seen:
                seen.add(kept)
                out.append({"width": float(w), "importance": importance, "divisor": int(divisor)})
        return out

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return bool(prune_plans(teacher_block))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        p = spec.params
        return prune_block(teacher_block, p["width"], p["importance"], p["divisor"])
