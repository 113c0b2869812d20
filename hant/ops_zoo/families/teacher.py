"""Families that keep or skip the teacher's block: keep (candidate 0 of every slot) and identity."""

from __future__ import annotations

import copy

from torch import nn

from ...slots import Slot
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
