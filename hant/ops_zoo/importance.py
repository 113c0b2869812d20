"""Importance of the channels of a transformer block's prune plans (MLP hidden units, attention
heads): the criteria of :mod:`hant.prune.importance` (L1, LAMP; first-order Taylor from data) read
through a plan's layers, where a group is a head and Torch-Pruning's graph does not apply.

Every criterion scores the channels of one prune plan's group (higher = keep). The weight
criteria read the layers that produce the group (``plan.out_convs``); where a layer stacks
several copies of the group (a fused q/k/v projection), a channel's score sums over the copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

from ..prune.importance import WEIGHT_CRITERIA
from .prune_ops import channel_dim

if TYPE_CHECKING:
    from .pruning import PrunePlan

IMPORTANCES = ("l1", "l2", "lamp", "taylor")
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
    """First-order Taylor importance of each plan's channels on one batch of slot data.

    Slot data has no task loss, and the distillation loss is zero at the teacher, so its gradient
    is too; the objective is instead ``<y, target>``, whose gradient at the block's output is the
    target itself (the first-order change of the output energy). A channel's activation ``a`` is
    the input of the plan's consumer layer (``plan.in_convs[0]``: dropping a channel zeroes it
    there); per sample, ``s = sum(a * dL/da)`` over positions, and the score is ``sum(s**2)``
    over samples (Molchanov et al., 2019). The block's weights and gradients are not touched.
    """
    acts: dict[int, torch.Tensor] = {}
    handles = []
    for i, plan in enumerate(plans):
        layer = block.get_submodule(plan.in_convs[0])

        def pre_hook(module: nn.Module, args: tuple, i: int = i) -> None:
            acts[i] = args[0]

        handles.append(layer.register_forward_pre_hook(pre_hook))
    was_training = block.training
    block.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x_in = x.detach().clone().requires_grad_(True)
            y = block(x_in)
            grads = torch.autograd.grad(
                y,
                [acts[i] for i in range(len(plans))],
                grad_outputs=target.detach().clone().to(y.dtype),
                allow_unused=True,
            )
            scores = []
            for i, plan in enumerate(plans):
                a, g = acts[i].detach(), grads[i]
                layer = block.get_submodule(plan.in_convs[0])
                if g is None:
                    scores.append(torch.zeros(a.shape[channel_dim(layer)], device=a.device))
                    continue
                prod = (a * g).movedim(channel_dim(layer), -1)
                per_sample = prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1)
                scores.append(per_sample.pow(2).sum(0).float())
    finally:
        for h in handles:
            h.remove()
        block.train(was_training)
    return scores
