"""Teacher-derived families for pre-norm ViT blocks (tokens in, tokens out).

``mlp_ratio`` keeps the block with fewer MLP hidden units, ``fewer_heads`` drops attention heads,
``slim_vit`` does both at once, ``mlp_only`` removes the attention branch (and may also shrink the
MLP). The three pruning families do not overlap, so a zoo of all of them has no duplicate blocks.
Kept units and heads are the teacher's most important ones (``l1``/``lamp`` from weights,
``taylor`` from slot data), with the teacher's weights. They apply to the block classes
registered with ``register_vit_block`` (timm's ``vision_transformer.Block``), whose forward is
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


DEFAULT_RATIOS = tuple(0.25 * i for i in range(1, 16))
"""MLP hidden units as multiples of the embedding width: 0.25, 0.5, ..., 3.75."""
DEFAULT_IMPORTANCE = ("l1", "lamp", "taylor")


def _hidden(block: nn.Module) -> int:
    return block.mlp.fc1.out_features


def _smaller_ratios(dim: int, hidden: int, ratios: Iterable[float]) -> list[float]:
    """The ratios giving distinct hidden-unit counts strictly between 0 and the teacher's."""
    sizes: dict[int, float] = {}
    for r in ratios:
        units = int(round(float(r) * dim))
        if 0 < units < hidden:
            sizes.setdefault(units, float(r))
    return list(sizes.values())


def default_head_counts(total: int) -> list[int]:
    """Head counts offered below the teacher's ``total``: every count up to 6 heads, else about
    sixths of ``total`` (so that large ViTs do not multiply the zoo by their head count)."""
    if total <= 6:
        return list(range(1, total))
    return sorted({max(1, round(total * k / 6)) for k in range(1, 6)} - {total})


def _head_counts(total: int, heads: Iterable[int] | None) -> list[int]:
    if heads is None:
        return default_head_counts(total)
    return sorted({int(h) for h in heads if 0 < int(h) < total})


def derive_pruned(teacher: nn.Module, plans: Sequence[PrunePlan], keeps: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of ``teacher`` cut to ``keeps`` along its prune plans."""
    return apply_keeps(copy.deepcopy(teacher), plans, keeps)


def _build(teacher: nn.Module, role: str, count: int, importance: str, derive) -> nn.Module:
    plans = prune_plans(teacher, (role,))
    if importance == "taylor":
        return TaylorSelected.from_plans(teacher, plans, [count], derive)
    return derive(teacher, plans, weight_keeps(teacher, plans, [count], importance))


def _with_importance(params: Iterable[dict], importance: str | tuple[str, ...]) -> list[dict]:
    names = importance_list(importance)
    return [{**p, "importance": name} for p in params for name in names]


class _VitFamily(CandidateFamily):
    """A family of cut-down ViT blocks; ``role`` (a class keyword) is the part of the block it cuts,
    which the block must have for the family to apply."""

    teacher_derived = True
    role = ""

    def __init_subclass__(cls, role: str = "", **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.role = role or cls.role

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return is_vit_block(teacher_block) and bool(prune_plans(teacher_block, (self.role,)))


class _OneRole(_VitFamily):
    """Cuts ``role`` only, to the units :meth:`units` reads from a spec, keeping the most important."""

    def units(self, spec: CandidateSpec, teacher_block: nn.Module) -> int:
        raise NotImplementedError

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        return _build(teacher_block, self.role, self.units(spec, teacher_block), spec.params["importance"], derive_pruned)


@register_family("mlp_ratio")
class MlpRatio(_OneRole, role="mlp"):
    """The teacher's ViT block with a smaller MLP: ``ratio`` × the embedding width hidden units."""

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        ratios: tuple[float, ...] = DEFAULT_RATIOS,
        importance: str | tuple[str, ...] = DEFAULT_IMPORTANCE,
    ) -> list[dict]:
        sizes = _smaller_ratios(slot.in_shape[-1], _hidden(teacher_block), ratios)
        return _with_importance(({"ratio": r} for r in sizes), importance)

    def units(self, spec: CandidateSpec, teacher_block: nn.Module) -> int:
        return int(round(spec.params["ratio"] * spec.signature.in_shape[-1]))


@register_family("fewer_heads")
class FewerHeads(_OneRole, role="heads"):
    """The teacher's ViT block with only ``heads`` of its attention heads (the most important)."""

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        heads: tuple[int, ...] | None = None,
        importance: str | tuple[str, ...] = DEFAULT_IMPORTANCE,
    ) -> list[dict]:
        """``heads`` lists head counts to offer; by default ``default_head_counts``."""
        counts = _head_counts(teacher_block.attn.num_heads, heads)
        return _with_importance(({"heads": h} for h in counts), importance)

    def units(self, spec: CandidateSpec, teacher_block: nn.Module) -> int:
        return spec.params["heads"] * teacher_block.attn.head_dim


def _build_slim(teacher: nn.Module, heads: int, units: int, importance: str) -> nn.Module:
    plans = prune_plans(teacher, ("heads", "mlp"))
    counts = [heads * teacher.attn.head_dim if p.role == "heads" else units for p in plans]
    if importance == "taylor":
        return TaylorSelected.from_plans(teacher, plans, counts, derive_pruned)
    return derive_pruned(teacher, plans, weight_keeps(teacher, plans, counts, importance))


@register_family("slim_vit")
class SlimVit(_VitFamily, role="heads"):
    """The teacher's ViT block with both fewer attention heads and a smaller MLP (each strictly
    below the teacher's; one alone is ``fewer_heads`` or ``mlp_ratio``)."""

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return super().applies_to(teacher_block) and bool(prune_plans(teacher_block, ("mlp",)))

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        heads: tuple[int, ...] | None = None,
        ratios: tuple[float, ...] = DEFAULT_RATIOS,
        importance: str | tuple[str, ...] = DEFAULT_IMPORTANCE,
    ) -> list[dict]:
        counts = _head_counts(teacher_block.attn.num_heads, heads)
        sizes = _smaller_ratios(slot.in_shape[-1], _hidden(teacher_block), ratios)
        return _with_importance(({"heads": h, "ratio": r} for h in counts for r in sizes), importance)

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        p = spec.params
        units = int(round(p["ratio"] * spec.signature.in_shape[-1]))
        return _build_slim(teacher_block, p["heads"], units, p["importance"])


def derive_mlp_only(teacher: nn.Module, plans: Sequence[PrunePlan], keeps: Sequence[torch.Tensor]) -> nn.Module:
    """An ``MlpOnlyBlock`` from the teacher's MLP branch, its hidden units cut to ``keeps``."""
    holder = nn.Module()
    holder.mlp = copy.deepcopy(teacher.mlp)
    apply_keeps(holder, plans, keeps)
    return MlpOnlyBlock(copy.deepcopy(teacher.norm2), holder.mlp, copy.deepcopy(teacher.ls2))


@register_family("mlp_only")
class MlpOnly(_VitFamily, role="mlp"):
    """The teacher's ViT block with the attention branch removed; the MLP keeps ``ratio`` × the
    embedding width hidden units (the teacher's own ratio keeps it whole)."""

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        ratios: tuple[float, ...] = DEFAULT_RATIOS,
        importance: str | tuple[str, ...] = DEFAULT_IMPORTANCE,
    ) -> list[dict]:
        dim, hidden = slot.in_shape[-1], _hidden(teacher_block)
        smaller = _smaller_ratios(dim, hidden, ratios)
        return [{"ratio": hidden / dim}, *_with_importance(({"ratio": r} for r in smaller), importance)]

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        p = spec.params
        units = int(round(p["ratio"] * spec.signature.in_shape[-1]))
        return _build(
            teacher_block, "mlp", min(units, _hidden(teacher_block)), p.get("importance", "l1"), derive_mlp_only
        )
