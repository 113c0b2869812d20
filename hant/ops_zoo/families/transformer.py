"""Teacher-derived families for pre-norm ViT blocks (tokens in, tokens out).

``mlp_ratio`` keeps the block with fewer MLP hidden units, ``fewer_heads`` drops attention heads,
``mlp_only`` removes the attention branch (and may also shrink the MLP). Kept units and heads are
the teacher's most important ones (``l1``/``lamp`` from weights, ``taylor`` from slot data), with
the teacher's weights. They apply to the block classes registered with ``register_vit_block``
(timm's ``vision_transformer.Block``), whose forward is
``x + ls1(attn(norm1(x))); x + ls2(mlp(norm2(x)))``.
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from ...slots import Slot
from ..pruning import PrunePlan, apply_keeps, prune_plans, weight_keeps
from ..registry import CandidateFamily, register_family
from ..selected import TaylorSelected
from ..spec import CandidateSpec
from ._common import importance_list
from .pruned import derive_pruned

_VIT_BLOCKS: set[type] = set()
_timm_registered = False


def register_vit_block(cls: type) -> type:
    """Declare a block class as a pre-norm ViT block (``norm1, attn, ls1, norm2, mlp, ls2``)."""
    _VIT_BLOCKS.add(cls)
    return cls


def is_vit_block(block: nn.Module) -> bool:
    """Whether ``block`` is of a registered pre-norm ViT block class."""
    global _timm_registered
    if not _timm_registered:
        _timm_registered = True
        try:
            from timm.models.vision_transformer import Block
        except ImportError:
            pass
        else:
            register_vit_block(Block)
    return type(block) in _VIT_BLOCKS


class MlpOnlyBlock(nn.Module):
    """A ViT block without its attention branch: ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, norm2: nn.Module, mlp: nn.Module, ls2: nn.Module):
        super().__init__()
        self.norm2 = norm2
        self.mlp = mlp
        self.ls2 = ls2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ls2(self.mlp(self.norm2(x)))


def _hidden(block: nn.Module) -> int:
    return block.mlp.fc1.out_features


def _build(teacher: nn.Module, role: str, count: int, importance: str, derive) -> nn.Module:
    plans = prune_plans(teacher, (role,))
    if importance == "taylor":
        return TaylorSelected(teacher, plans, [count], derive)
    return derive(teacher, plans, weight_keeps(teacher, plans, [count], importance))


def _with_importance(params: Iterable[dict], importance: str | tuple[str, ...]) -> list[dict]:
    names = importance_list(importance)
    return [{**p, "importance": name} for p in params for name in names]


class _VitFamily(CandidateFamily):
    teacher_derived = True
    role = ""

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return is_vit_block(teacher_block) and bool(prune_plans(teacher_block, (self.role,)))


@register_family("mlp_ratio")
class MlpRatio(_VitFamily):
    """The teacher's ViT block with a smaller MLP: ``ratio`` × the embedding width hidden units."""

    role = "mlp"

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        ratios: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5),
        importance: str | tuple[str, ...] = "l1",
    ) -> list[dict]:
        dim, hidden = slot.in_shape[-1], _hidden(teacher_block)
        sizes = {}
        for r in ratios:
            units = int(round(float(r) * dim))
            if 0 < units < hidden:
                sizes.setdefault(units, float(r))
        return _with_importance(({"ratio": r} for r in sizes.values()), importance)

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        units = int(round(spec.params["ratio"] * spec.signature.in_shape[-1]))
        return _build(teacher_block, "mlp", units, spec.params["importance"], derive_pruned)


@register_family("fewer_heads")
class FewerHeads(_VitFamily):
    """The teacher's ViT block with only ``heads`` of its attention heads (the most important)."""

    role = "heads"

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        heads: tuple[int, ...] | None = None,
        importance: str | tuple[str, ...] = "l1",
    ) -> list[dict]:
        """``heads`` lists head counts to offer; by default every count below the teacher's."""
        total = teacher_block.attn.num_heads
        counts = range(1, total) if heads is None else sorted({int(h) for h in heads if 0 < int(h) < total})
        return _with_importance(({"heads": h} for h in counts), importance)

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        count = spec.params["heads"] * teacher_block.attn.head_dim
        return _build(teacher_block, "heads", count, spec.params["importance"], derive_pruned)


def derive_mlp_only(teacher: nn.Module, plans: Sequence[PrunePlan], keeps: Sequence[torch.Tensor]) -> nn.Module:
    """An ``MlpOnlyBlock`` from the teacher's MLP branch, its hidden units cut to ``keeps``."""
    holder = nn.Module()
    holder.mlp = copy.deepcopy(teacher.mlp)
    apply_keeps(holder, plans, keeps)
    return MlpOnlyBlock(copy.deepcopy(teacher.norm2), holder.mlp, copy.deepcopy(teacher.ls2))


@register_family("mlp_only")
class MlpOnly(_VitFamily):
    """The teacher's ViT block with the attention branch removed; the MLP keeps ``ratio`` × the
    embedding width hidden units (the teacher's own ratio keeps it whole)."""

    role = "mlp"

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        ratios: tuple[float, ...] = (1.0, 2.0, 4.0),
        importance: str | tuple[str, ...] = "l1",
    ) -> list[dict]:
        dim, hidden = slot.in_shape[-1], _hidden(teacher_block)
        out, seen = [{"ratio": hidden / dim}], {hidden}
        for r in ratios:
            units = int(round(float(r) * dim))
            if 0 < units < hidden and units not in seen:
                seen.add(units)
                out.extend(_with_importance([{"ratio": float(r)}], importance))
        return out

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        p = spec.params
        units = int(round(p["ratio"] * spec.signature.in_shape[-1]))
        return _build(
            teacher_block, "mlp", min(units, _hidden(teacher_block)), p.get("importance", "l1"), derive_mlp_only
        )
