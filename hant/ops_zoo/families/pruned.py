"""The teacher's block channel-pruned: its inner groups cut to a fraction of their width."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from ...slots import Slot
from ..pruning import PrunePlan, apply_keeps, block_width, keep_counts, prune_block, prune_plans
from ..registry import CandidateFamily, register_family
from ..selected import TaylorSelected
from ..spec import CandidateSpec
from ._common import importance_list

DEFAULT_WIDTHS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)


def derive_pruned(teacher: nn.Module, plans: Sequence[PrunePlan], keeps: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of ``teacher`` cut to ``keeps``."""
    return apply_keeps(copy.deepcopy(teacher), plans, keeps)


@register_family("pruned")
class Pruned(CandidateFamily):
    """The teacher's block with its inner channels cut to a fraction of their width (the teacher
    itself is the 100 % point), initialised from the teacher's most important channels:
    ``l1`` or ``lamp`` from weights, ``taylor`` from the first batch of slot data."""

    teacher_derived = True

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        widths: tuple[float, ...] = DEFAULT_WIDTHS,
        importance: str | tuple[str, ...] = "l1",
        divisor: int = 8,
    ) -> list[dict]:
        """One candidate per width (and importance) that gives distinct channel counts below the teacher's."""
        names = importance_list(importance)
        plans = prune_plans(teacher_block, ("channels",))
        seen = {tuple(block_width(teacher_block, plan) for plan in plans)}
        out = []
        for w in widths:
            if not 0.0 < float(w) < 1.0:
                continue
            kept = tuple(keep_counts(teacher_block, plans, float(w), int(divisor)))
            if kept not in seen:
                seen.add(kept)
                out.extend({"width": float(w), "importance": name, "divisor": int(divisor)} for name in names)
        return out

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return bool(prune_plans(teacher_block, ("channels",)))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        p = spec.params
        if p["importance"] == "taylor":
            plans = prune_plans(teacher_block, ("channels",))
            counts = keep_counts(teacher_block, plans, p["width"], p["divisor"])
            return TaylorSelected(teacher_block, plans, counts, derive_pruned)
        return prune_block(teacher_block, p["width"], p["importance"], p["divisor"])
