"""Channel-group saliency for whole-network pruning: HALP's BatchNorm Taylor and SP-LAMP's filter LAMP.

Both return, per prunable group, one score per channel of the group (higher = keep).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..ops_zoo.importance import lamp_scores
from .groups import ChannelGroup

__all__ = ["BnTaylor", "lamp_filter_scores"]


class BnTaylor:
    """First-order Taylor importance on BatchNorm scale and shift (HALP, after Molchanov et al. 2019).

    After each backward pass, :meth:`update` adds, per channel of a group, the square of the
    summed ``γ·∂L/∂γ + β·∂L/∂β`` over the group's norm layers (the first-order change of the loss
    when the channel is removed from every coupled layer at once). Groups without a norm use the
    producers' ``Σ w·∂L/∂w`` over each filter instead. :meth:`scores` averages over the updates.
    """

    def __init__(self, model: nn.Module, groups: Iterable[ChannelGroup]) -> None:
        self.model = model
        self.groups = [g for g in groups if not g.fixed]
        self.total = {g.name: torch.zeros(g.width) for g in self.groups}
        self.steps = 0

    def _first_order(self, g: ChannelGroup) -> torch.Tensor:
        s = torch.zeros(g.width)
        layers = g.norms or g.producers
        for path in layers:
            m = self.model.get_submodule(path)
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if isinstance(p, nn.Parameter) and p.grad is not None:
                    s += (p.detach() * p.grad.detach()).float().flatten(1).sum(1).cpu() if p.dim() > 1 else (p.detach() * p.grad.detach()).float().cpu()
        return s

    def update(self) -> None:
        """Accumulate the importance of the gradients now stored in the model."""
        for g in self.groups:
            self.total[g.name] += self._first_order(g).pow(2)
        self.steps += 1

    def scores(self) -> dict[str, torch.Tensor]:
        """Per group, the mean importance of each channel over the updates so far."""
        n = max(1, self.steps)
        return {name: t / n for name, t in self.total.items()}


def lamp_filter_scores(model: nn.Module, groups: Iterable[ChannelGroup]) -> dict[str, torch.Tensor]:
    """SP-LAMP: LAMP scores lifted to filters. For every layer producing a group, each output
    channel's filter norm gets the LAMP score ``n_c² / Σ_{n_j ≥ n_c} n_j²`` within that layer (so
    scores of different layers are comparable); a channel's score sums over its coupled layers."""
    out = {}
    for g in groups:
        if g.fixed:
            continue
        total = torch.zeros(g.width)
        for path in g.producers:
            w = model.get_submodule(path).weight.detach().float()
            total += lamp_scores(w.flatten(1).norm(dim=1)).cpu()
        out[g.name] = total
    return out
