"""Channel importance of coupled groups: one interface, the criteria hant's pruners use.

Every criterion maps a model and its :class:`~hant.prune.groups.ChannelGroup` s to one score per
channel of each prunable group (higher = keep), read from the group's layers at the indices
Torch-Pruning gave each of them (so a channel that reaches a norm through a concatenation is
scored there at its position in the concatenation). From weights: ``l1`` and ``l2`` (filter norms of
the producers, summed over coupled producers) and ``lamp`` (SP-LAMP: each producer's filter norms
LAMP-normalised within that layer, so one threshold serves all layers). From gradients, accumulated
over training steps by :class:`GradientImportance`: ``bn_taylor`` (HALP: ``γ·∂L/∂γ + β·∂L/∂β`` over the
group's norms, producers where it has none) and ``taylor`` (``Σ w·∂L/∂w`` over the producers' filters),
each squared per step and averaged (Molchanov et al., 2019).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..ops_zoo.importance import lamp_scores
from .groups import ChannelGroup

__all__ = ["GRADIENT_CRITERIA", "WEIGHT_CRITERIA", "GradientImportance", "lamp_filter_scores", "weight_importance"]


def _scatter(g: ChannelGroup, kinds: tuple[str, ...], per_channel: Callable[[nn.Module], torch.Tensor | None],
             model: nn.Module) -> torch.Tensor:
    """Sum ``per_channel(layer)`` (one value per output channel of the layer) into the group's
    channels over the group's output-side members of the given kinds."""
    total = torch.zeros(g.width)
    for m in g.members:
        if not m.outputs or m.is_parameter or g.kinds[m.path] not in kinds:
            continue
        values = per_channel(model.get_submodule(m.path))
        if values is not None:
            total.index_add_(0, torch.tensor(m.root), values.detach().float().cpu()[list(m.local)])
    return total


def _filter_norm(p: float) -> Callable[[nn.Module], torch.Tensor]:
    return lambda layer: layer.weight.detach().float().flatten(1).norm(p=p, dim=1)


WEIGHT_CRITERIA: dict[str, Callable[[nn.Module], torch.Tensor]] = {
    "l1": _filter_norm(1),
    "l2": _filter_norm(2),
    "lamp": lambda layer: lamp_scores(layer.weight.detach().float().flatten(1).norm(dim=1)),
}


def weight_importance(model: nn.Module, groups: Iterable[ChannelGroup], criterion: str) -> dict[str, torch.Tensor]:
    """Per prunable group, each channel's ``l1``, ``l2`` or ``lamp`` score from its producers' filters."""
    per_channel = WEIGHT_CRITERIA[criterion]
    return {g.name: _scatter(g, ("producer",), per_channel, model) for g in groups if not g.fixed}


def lamp_filter_scores(model: nn.Module, groups: Iterable[ChannelGroup]) -> dict[str, torch.Tensor]:
    """SP-LAMP's scores: :func:`weight_importance` with ``lamp`` (a layer's largest filter scores 1)."""
    return weight_importance(model, groups, "lamp")


def _taylor(names: tuple[str, ...]) -> Callable[[nn.Module], torch.Tensor | None]:
    def first_order(layer: nn.Module) -> torch.Tensor | None:
        total = None
        for name in names:
            p = getattr(layer, name, None)
            if isinstance(p, nn.Parameter) and p.grad is not None:
                s = (p.detach() * p.grad.detach()).float()
                s = s.flatten(1).sum(1) if s.dim() > 1 else s
                total = s if total is None else total + s
        return total

    return first_order


GRADIENT_CRITERIA = ("bn_taylor", "taylor")


class GradientImportance:
    """First-order Taylor importance accumulated over training steps (``bn_taylor`` or ``taylor``).

    After each backward pass, :meth:`update` adds, per channel of a group, the square of the summed
    first-order term over the group's layers (the change of the loss when the channel is removed from
    every coupled layer at once). :meth:`scores` averages over the updates.
    """

    def __init__(self, model: nn.Module, groups: Iterable[ChannelGroup], criterion: str = "bn_taylor") -> None:
        if criterion not in GRADIENT_CRITERIA:
            raise ValueError(f"unknown gradient criterion {criterion!r}; choose one of {list(GRADIENT_CRITERIA)}")
        self.model = model
        self.criterion = criterion
        self.groups = [g for g in groups if not g.fixed]
        self.total = {g.name: torch.zeros(g.width) for g in self.groups}
        self.steps = 0

    def _first_order(self, g: ChannelGroup) -> torch.Tensor:
        if self.criterion == "bn_taylor" and g.norms:
            return _scatter(g, ("norm",), _taylor(("weight", "bias")), self.model)
        return _scatter(g, ("producer",), _taylor(("weight", "bias")), self.model)

    def update(self) -> None:
        """Accumulate the importance of the gradients now stored in the model."""
        for g in self.groups:
            self.total[g.name] += self._first_order(g).pow(2)
        self.steps += 1

    def scores(self) -> dict[str, torch.Tensor]:
        """Per group, the mean importance of each channel over the updates so far."""
        n = max(1, self.steps)
        return {name: t / n for name, t in self.total.items()}
