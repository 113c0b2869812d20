"""Prune plans of transformer blocks: attention heads and MLP hidden units.

Channel groups of convolutional blocks come from Torch-Pruning's dependency graph
(``hant.pruning.block``). A transformer block's heads are another matter: a head is a slice of a
fused q/k/v projection and the attention module's ``num_heads`` must follow it, which the graph does
not know. A plan names, for one block class, such a group: which layers lose output channels, which
lose input channels, the norms between, and the attention module whose head count follows. Cut
primitives live in ``prune_ops``, importance criteria in ``importance``, the plans of timm's blocks
in ``timm_plans``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .importance import weight_importance
from .prune_ops import (
    in_width,
    prune_in,
    prune_norm,
    prune_out,
)

__all__ = [
    "PrunePlan",
    "apply_keeps",
    "block_width",
    "prune_plans",
    "pruned_width",
    "register_prune_plan",
    "select_keep",
    "weight_keeps",
]


@dataclass
class PrunePlan:
    """Paths, inside one block, of the layers coupled through one inner channel group."""

    out_convs: list[str]
    """Layers whose output channels are the group; weight criteria score their filters."""
    norms: list[str]
    in_convs: list[str]
    """Layers whose input channels are the group; the first one's input is the group's activation."""
    extra_out: list[str] = field(default_factory=list)
    """Layers whose outputs follow the group but are not scored (e.g. a gate's expansion)."""
    unit: int = 1
    """Channels that are kept or dropped together (an attention head)."""
    attention: str | None = None
    """Attention module whose ``num_heads`` / ``attn_dim`` follow the group (``unit`` = head size)."""
    role: str = "mlp"
    """What the group is: ``mlp`` (hidden units) or ``heads``."""


def block_width(block: nn.Module, plan: PrunePlan) -> int:
    """Channels of the group that ``plan`` prunes."""
    return in_width(block.get_submodule(plan.in_convs[0]))


_PLANS: dict[type, Callable[[nn.Module], list[PrunePlan]]] = {}
_timm_plans_registered = False


def register_prune_plan(cls: type) -> Callable:
    """Decorator: register the function giving a block class's prunable channel groups."""

    def decorator(fn: Callable[[nn.Module], list[PrunePlan]]) -> Callable[[nn.Module], list[PrunePlan]]:
        _PLANS[cls] = fn
        return fn

    return decorator


def prune_plans(block: nn.Module, roles: Sequence[str] | None = None) -> list[PrunePlan]:
    """The prunable inner channel groups of ``block`` (empty when its type has no plan),
    optionally only those whose ``role`` is in ``roles``."""
    _register_timm_plans()
    for cls, fn in _PLANS.items():
        if type(block) is cls:
            return [p for p in fn(block) if p is not None and (roles is None or p.role in roles)]
    return []


def _register_timm_plans() -> None:
    global _timm_plans_registered
    if _timm_plans_registered:
        return
    _timm_plans_registered = True
    from .timm_plans import register_timm_plans

    register_timm_plans(register_prune_plan)


def pruned_width(channels: int, width: float, divisor: int) -> int:
    """Channels kept at fraction ``width``, rounded to a multiple of ``divisor`` (at least one)."""
    kept = int(round(channels * width / divisor)) * divisor
    return max(min(divisor, channels), min(channels, kept))


def select_keep(scores: torch.Tensor, n_keep: int, unit: int = 1) -> torch.Tensor:
    """Sorted indices of the ``n_keep`` best channels, taken as whole units of ``unit`` channels."""
    if unit > 1:
        unit_scores = scores.view(-1, unit).sum(1)
        units = torch.topk(unit_scores, n_keep // unit, sorted=False).indices
        keep = (units[:, None] * unit + torch.arange(unit, device=scores.device)).flatten()
    else:
        keep = torch.topk(scores, n_keep, sorted=False).indices
    return torch.sort(keep).values


def weight_keeps(
    block: nn.Module, plans: Sequence[PrunePlan], counts: Sequence[int], importance: str
) -> list[torch.Tensor]:
    """Each plan's kept channels ranked by a weight criterion (``taylor`` ranks by L1 until data)."""
    score = weight_importance(importance)
    return [select_keep(score(block, plan), n, plan.unit) for plan, n in zip(plans, counts)]


def apply_keeps(block: nn.Module, plans: Sequence[PrunePlan], keeps: Sequence[torch.Tensor]) -> nn.Module:
    """Cut ``block`` in place so that each plan keeps only channels ``keeps[i]``; returns it."""
    widths = [block_width(block, plan) for plan in plans]
    for plan, keep, width in zip(plans, keeps, widths):
        for path in (*plan.out_convs, *plan.extra_out):
            prune_out(block.get_submodule(path), keep, width)
        for path in plan.norms:
            prune_norm(block.get_submodule(path), keep)
        for path in plan.in_convs:
            prune_in(block.get_submodule(path), keep)
        if plan.attention is not None:
            attn = block.get_submodule(plan.attention)
            attn.num_heads = len(keep) // plan.unit
            if hasattr(attn, "attn_dim"):
                attn.attn_dim = len(keep)
    return block
