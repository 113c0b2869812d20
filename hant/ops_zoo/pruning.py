"""Channel pruning of a block's inner width: per-layer primitives and per-block-type plans.

A plan names, for one block class, the inner channel group that can shrink without changing
the block's input or output: which layers lose output channels, which lose input channels,
and which (depthwise) lose both. Primitives cut one layer; importance criteria rank channels.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import ZooError


def _cut(param: torch.Tensor, dim: int, keep: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(param.detach().index_select(dim, keep).clone(), requires_grad=param.requires_grad)


def prune_conv_out(conv: nn.Conv2d, keep: torch.Tensor) -> None:
    """Keep only output channels ``keep`` of a (non-grouped) convolution."""
    conv.weight = _cut(conv.weight, 0, keep)
    if conv.bias is not None:
        conv.bias = _cut(conv.bias, 0, keep)
    conv.out_channels = len(keep)


def prune_conv_in(conv: nn.Conv2d, keep: torch.Tensor) -> None:
    """Keep only input channels ``keep`` of a (non-grouped) convolution."""
    conv.weight = _cut(conv.weight, 1, keep)
    conv.in_channels = len(keep)


def prune_depthwise(conv: nn.Conv2d, keep: torch.Tensor) -> None:
    """Keep only channels ``keep`` of a depthwise convolution (groups == channels)."""
    conv.weight = _cut(conv.weight, 0, keep)
    if conv.bias is not None:
        conv.bias = _cut(conv.bias, 0, keep)
    conv.in_channels = conv.out_channels = conv.groups = len(keep)


def prune_norm(norm: nn.Module, keep: torch.Tensor) -> None:
    """Keep only channels ``keep`` of a BatchNorm-like layer (affine and running statistics)."""
    for name in ("weight", "bias"):
        p = getattr(norm, name, None)
        if isinstance(p, nn.Parameter):
            setattr(norm, name, _cut(p, 0, keep))
    for name in ("running_mean", "running_var"):
        b = getattr(norm, name, None)
        if isinstance(b, torch.Tensor):
            setattr(norm, name, b.index_select(0, keep).clone())
    norm.num_features = len(keep)


@dataclass
class PrunePlan:
    """Paths, inside one block, of the layers coupled through its inner channel group."""

    out_convs: list[str]
    norms: list[str]
    in_convs: list[str]
    depthwise: list[str] = field(default_factory=list)
    se: str | None = None
    """Squeeze-excitation module whose conv_reduce input and conv_expand output follow the group."""


def block_width(block: nn.Module, plan: PrunePlan) -> int:
    """Channels of the group that ``plan`` prunes."""
    return block.get_submodule(plan.out_convs[0]).out_channels


_PLANS: dict[type, Callable[[nn.Module], list[PrunePlan]]] = {}
_timm_plans_registered = False


def register_prune_plan(cls: type) -> Callable:
    """Decorator: register the function giving a block class's prunable channel groups."""

    def decorator(fn: Callable[[nn.Module], list[PrunePlan]]) -> Callable[[nn.Module], list[PrunePlan]]:
        _PLANS[cls] = fn
        return fn

    return decorator


def prune_plans(block: nn.Module) -> list[PrunePlan]:
    """The prunable inner channel groups of ``block`` (empty when its type has no plan)."""
    _register_timm_plans()
    for cls, fn in _PLANS.items():
        if type(block) is cls:
            return [p for p in fn(block) if p is not None]
    return []


def _is_conv(m: nn.Module | None) -> bool:
    return isinstance(m, nn.Conv2d)


def _register_timm_plans() -> None:
    global _timm_plans_registered
    if _timm_plans_registered:
        return
    _timm_plans_registered = True
    from timm.models import resnet
    from timm.models._efficientnet_blocks import EdgeResidual, InvertedResidual

    @register_prune_plan(resnet.BasicBlock)
    def _basic(block: nn.Module) -> list[PrunePlan]:
        return [PrunePlan(out_convs=["conv1"], norms=["bn1"], in_convs=["conv2"])]

    @register_prune_plan(resnet.Bottleneck)
    def _bottleneck(block: nn.Module) -> list[PrunePlan]:
        if block.conv2.groups != 1:
            return []  # grouped (ResNeXt) widths must shrink by whole groups: not planned yet
        return [
            PrunePlan(out_convs=["conv1"], norms=["bn1"], in_convs=["conv2"]),
            PrunePlan(out_convs=["conv2"], norms=["bn2"], in_convs=["conv3"]),
        ]

    def _se_path(block: nn.Module) -> str | None:
        se = getattr(block, "se", None)
        return "se" if se is not None and _is_conv(getattr(se, "conv_reduce", None)) else None

    @register_prune_plan(InvertedResidual)
    def _inverted(block: nn.Module) -> list[PrunePlan]:
        if block.conv_dw.groups != block.conv_dw.in_channels:
            return []
        return [
            PrunePlan(
                out_convs=["conv_pw"], norms=["bn1", "bn2"], in_convs=["conv_pwl"], depthwise=["conv_dw"], se=_se_path(block)
            )
        ]

    @register_prune_plan(EdgeResidual)
    def _edge(block: nn.Module) -> list[PrunePlan]:
        return [PrunePlan(out_convs=["conv_exp"], norms=["bn1"], in_convs=["conv_pwl"], se=_se_path(block))]


def l1_importance(block: nn.Module, plan: PrunePlan) -> torch.Tensor:
    """Per-channel importance: L1 norm of the filters that produce the channel."""
    scores = torch.zeros(block_width(block, plan))
    for path in plan.out_convs:
        w = block.get_submodule(path).weight.detach()
        scores += w.abs().flatten(1).sum(1)
    return scores


IMPORTANCE: dict[str, Callable[[nn.Module, PrunePlan], torch.Tensor]] = {"l1": l1_importance}


def pruned_width(channels: int, width: float, divisor: int) -> int:
    """Channels kept at fraction ``width``, rounded to a multiple of ``divisor`` (at least one)."""
    kept = int(round(channels * width / divisor)) * divisor
    return max(min(divisor, channels), min(channels, kept))


def prune_block(block: nn.Module, width: float, importance: str = "l1", divisor: int = 8) -> nn.Module:
    """A copy of ``block`` whose inner channel groups keep fraction ``width`` of their channels,
    the most important ones, with the teacher's weights for them."""
    plans = prune_plans(block)
    if not plans:
        raise ZooError(f"no channel-pruning plan is registered for {type(block).__name__}")
    if importance not in IMPORTANCE:
        raise ZooError(f"unknown channel importance {importance!r}; choose one of {sorted(IMPORTANCE)}")
    pruned = copy.deepcopy(block)
    for plan in plans:
        channels = block_width(pruned, plan)
        n_keep = pruned_width(channels, width, divisor)
        scores = IMPORTANCE[importance](pruned, plan)
        keep = torch.sort(torch.topk(scores, n_keep, sorted=False).indices).values
        for path in plan.out_convs:
            prune_conv_out(pruned.get_submodule(path), keep)
        for path in plan.norms:
            prune_norm(pruned.get_submodule(path), keep)
        for path in plan.depthwise:
            prune_depthwise(pruned.get_submodule(path), keep)
        for path in plan.in_convs:
            prune_conv_in(pruned.get_submodule(path), keep)
        if plan.se is not None:
            se = pruned.get_submodule(plan.se)
            prune_conv_in(se.conv_reduce, keep)
            prune_conv_out(se.conv_expand, keep)
    return pruned
