"""Channel importance criteria for pruning: L1 and LAMP from weights, first-order Taylor from data.

Every criterion scores the channels of one prune plan's group (higher = keep). The weight
criteria read the layers that produce the group (``plan.out_convs``); where a layer stacks
several copies of the group (a fused q/k/v projection), a channel's score sums over the copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

from .prune_ops import channel_dim

if TYPE_CHECKING:
    from .pruning import PrunePlan

IMPORTANCES = ("l1", "lamp", "taylor")
"""Every criterion a pruned candidate may name; ``taylor`` needs a batch of slot data."""


def _per_channel(weight_scores: torch.Tensor, width: int) -> torch.Tensor:
    """Sum per-weight scores (rows = output channels, maybe stacked copies) to one per channel."""
    rows = weight_scores.flatten(1).sum(1)
    return rows.view(-1, width).sum(0) if rows.numel() != width else rows


def l1_importance(block: nn.Module, plan: "PrunePlan") -> torch.Tensor:
    """Per-channel importance: L1 norm of the filters that produce the channel."""
    from .pruning import block_width

    width = block_width(block, plan)
    return sum(_per_channel(block.get_submodule(p).weight.detach().abs().float(), width) for p in plan.out_convs)


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every weight (Lee et al., 2021): its squared magnitude over the sum of the
    squared magnitudes of all weights of the layer that are at least as large.

    The per-layer normalisation makes scores of different layers comparable; within a layer
    the order is that of the magnitudes, but the largest weights score far above the rest.
    """
    sq = weight.detach().float().pow(2).flatten()
    order = torch.argsort(sq)
    sorted_sq = sq[order]
    # suffix sums: for the u-th smallest weight, the energy of it and every larger one
    tail = torch.flip(torch.cumsum(torch.flip(sorted_sq, [0]), 0), [0])
    scores = torch.empty_like(sq)
    scores[order] = sorted_sq / tail.clamp_min(1e-30)
    return scores.view_as(weight)


def lamp_importance(block: nn.Module, plan: "PrunePlan") -> torch.Tensor:
    """Per-channel importance: the sum of the LAMP scores of the weights that produce the channel,
    each producing layer normalised on its own."""
    from .pruning import block_width

    width = block_width(block, plan)
    return sum(_per_channel(lamp_scores(block.get_submodule(p).weight), width) for p in plan.out_convs)


WEIGHT_IMPORTANCE: dict[str, Callable[[nn.Module, "PrunePlan"], torch.Tensor]] = {
    "l1": l1_importance,
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
