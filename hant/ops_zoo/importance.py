"""Importance of the channels of a transformer block's prune plans (MLP hidden units, attention
heads): the criteria of :mod:`hant.pruning.importance` (L1, LAMP; first-order Taylor from data) read
through a plan's layers, where a group is a head and Torch-Pruning's graph does not apply.

Every criterion scores the channels of one prune plan's group (higher = keep). The weight
criteria read the layers that produce the group (``plan.out_convs``); where a layer stacks
several copies of the group (a fused q/k/v projection), a channel's score sums over the copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

from ..pruning.importance import BLOCK_CRITERIA, WEIGHT_CRITERIA, ActivationSite, output_taylor_importance

if TYPE_CHECKING:
    from .pruning import PrunePlan

IMPORTANCES = BLOCK_CRITERIA
"""Every criterion a pruned candidate may name; ``taylor`` needs a batch of slot data."""


def _per_channel(row_scores: torch.Tensor, width: int) -> torch.Tensor:
    """One score per output row (maybe stacked copies of the group) summed to one per channel."""
    return row_scores.view(-1, width).sum(0) if row_scores.numel() != width else row_scores


def _plan_scores(block: nn.Module, plan: "PrunePlan", criterion: str) -> torch.Tensor:
    from .pruning import block_width

    width = block_width(block, plan)
    return sum(_per_channel(WEIGHT_CRITERIA[criterion](block.get_submodule(p)), width) for p in plan.out_convs)


def l1_importance(block: nn.Module, plan: "PrunePlan") -> torch.Tensor:
    """Per-channel importance: L1 norm of the filters that produce the channel."""
    return _plan_scores(block, plan, "l1")


def lamp_importance(block: nn.Module, plan: "PrunePlan") -> torch.Tensor:
    """Per-channel importance: the LAMP score of the channel's filter norm within each producing
    layer (as SP-LAMP scores filters), summed over the producing layers."""
    return _plan_scores(block, plan, "lamp")


WEIGHT_IMPORTANCE: dict[str, Callable[[nn.Module, "PrunePlan"], torch.Tensor]] = {
    "l1": l1_importance,
    "l2": lambda block, plan: _plan_scores(block, plan, "l2"),
    "lamp": lamp_importance,
}


def weight_importance(name: str) -> Callable[[nn.Module, "PrunePlan"], torch.Tensor]:
    """The weight-only criterion used at build time; ``taylor`` starts from L1 until it sees data."""
    return WEIGHT_IMPORTANCE.get(name, l1_importance)


def taylor_importance(
    block: nn.Module, plans: Sequence["PrunePlan"], x: torch.Tensor, target: torch.Tensor
) -> list[torch.Tensor]:
    """First-order Taylor importance of each plan's channels on one batch of slot data
    (:func:`hant.pruning.importance.output_taylor_importance`), read at the input of the plan's
    consumer layer (``plan.in_convs[0]``)."""
    from .pruning import block_width

    sites = {}
    for i, plan in enumerate(plans):
        width = tuple(range(block_width(block, plan)))
        sites[str(i)] = ActivationSite(plan.in_convs[0], len(width), width, width)
    scores = output_taylor_importance(block, sites, x, target)
    return [scores[str(i)].to(x.device) for i in range(len(plans))]
