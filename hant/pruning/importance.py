"""Channel importance of coupled groups: one interface, the criteria hant's pruners use.

Every criterion maps a model and its :class:`~hant.pruning.groups.ChannelGroup` s to one score per
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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .groups import ChannelGroup

__all__ = [
    "BLOCK_CRITERIA", "CRITERIA", "GRADIENT_CRITERIA", "ActivationSite", "WEIGHT_CRITERIA", "GradientImportance", "lamp_filter_scores", "lamp_scores",
    "output_taylor_importance", "weight_importance",
]


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
CRITERIA = (*WEIGHT_CRITERIA, *GRADIENT_CRITERIA)
"""Every criterion of this module: from weights, then from gradients over training."""
BLOCK_CRITERIA = (*WEIGHT_CRITERIA, "taylor")
"""Criteria a pruned block may name (the zoo's families): from weights, or ``taylor`` from a batch of
slot data (:func:`output_taylor_importance`)."""


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


@dataclass(frozen=True)
class ActivationSite:
    """Where a group's channels are read for Taylor importance: the input of layer ``path``, whose
    channel ``local[i]`` (on the layer's channel dimension) is the group's channel ``root[i]``."""

    path: str
    width: int
    local: tuple[int, ...]
    root: tuple[int, ...]

    @classmethod
    def of(cls, g: ChannelGroup) -> "ActivationSite":
        """The input of the group's last consumer (dropping a channel zeroes it there)."""
        m = next(m for m in reversed(g.members) if not m.outputs and m.path == g.consumers[-1])
        return cls(m.path, g.width, m.local, m.root)


def output_taylor_importance(block: nn.Module, sites: Mapping[str, ActivationSite], x: torch.Tensor,
                             target: torch.Tensor) -> dict[str, torch.Tensor]:
    """First-order Taylor importance of each group's channels on one batch of a block's data.

    Slot data has no task loss, and the distillation loss is zero at the teacher, so its gradient
    is too; the objective is instead ``<y, target>``, whose gradient at the block's output is the
    target itself (the first-order change of the output energy). A channel's activation ``a`` is
    read at its :class:`ActivationSite`; per sample, ``s = sum(a * dL/da)`` over the channel's
    positions, and the score is ``sum(s**2)`` over samples (Molchanov et al., 2019). The block's
    weights and gradients are not touched.
    """
    acts: dict[str, torch.Tensor] = {}
    handles = []
    for name, site in sites.items():
        def pre_hook(module: nn.Module, args: tuple, name: str = name) -> None:
            acts[name] = args[0]

        handles.append(block.get_submodule(site.path).register_forward_pre_hook(pre_hook))
    was_training = block.training
    block.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            y = block(x.detach().clone().requires_grad_(True))
            names = list(sites)
            grads = torch.autograd.grad(y, [acts[n] for n in names], grad_outputs=target.detach().clone().to(y.dtype),
                                        allow_unused=True)
    finally:
        for h in handles:
            h.remove()
        block.train(was_training)
    out = {}
    for name, grad in zip(names, grads):
        site, a = sites[name], acts[name].detach()
        if grad is None:
            out[name] = torch.zeros(site.width)
            continue
        dim = -1 if isinstance(block.get_submodule(site.path), nn.Linear) else 1
        prod = (a * grad).movedim(dim, -1)
        per_feature = prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1).float().cpu()
        per_channel = torch.zeros(per_feature.shape[0], site.width).index_add_(
            1, torch.tensor(site.root), per_feature[:, list(site.local)])
        out[name] = per_channel.pow(2).sum(0)
    return out
