"""Reorder a network's channel groups so that each group's most important channels come first.

The network computes the same function afterwards (every layer a group runs through is permuted the
same way), but cutting a group to its first ``n`` channels now keeps its ``n`` most important ones.
That is what lets a block be cut alone, from its own weights, to a stream width the whole network
agrees on: the op zoo's ``stream_cut`` candidates and the students assembled from them rely on it.

Torch-Pruning cuts channels but has no permutation, so the layers it groups are permuted here:
convolutions (depthwise included), linear layers, batch and layer norms, and bare parameters. A
group through any other layer (a group norm mixes channels within its groups) is refused.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..errors import PruneError
from .groups import ChannelGroup, Member

__all__ = ["importance_order", "reorder_groups"]


def importance_order(importance: torch.Tensor) -> torch.Tensor:
    """Channel indices from most to least important (ties by index, so the order is deterministic)."""
    return torch.sort(-importance.float(), stable=True).indices


def _layer_index(member: Member, order: torch.Tensor, size: int) -> torch.Tensor:
    """Index along the member's dimension that moves old group channel ``order[j]`` to where channel j sits."""
    by_root: dict[int, list[int]] = defaultdict(list)
    for local, root in zip(member.local, member.root):
        by_root[root].append(local)
    index = torch.arange(size)
    for j, old in enumerate(order.tolist()):
        for dst, src in zip(by_root.get(j, ()), by_root.get(old, ())):
            index[dst] = src
    return index


def _tensors(layer: nn.Module, outputs: bool, path: str) -> list[tuple[str, int]]:
    """(attribute, dimension) pairs of ``layer`` that hold the member's channels."""
    if isinstance(layer, _ConvNd):
        if layer.groups > 1:  # depthwise or grouped: input and output channels are one dimension
            return [("weight", 0), ("bias", 0)]
        out_dim, in_dim = (1, 0) if layer.transposed else (0, 1)
        return [("weight", out_dim), ("bias", 0)] if outputs else [("weight", in_dim)]
    if isinstance(layer, nn.Linear):
        return [("weight", 0), ("bias", 0)] if outputs else [("weight", 1)]
    if isinstance(layer, (_BatchNorm, nn.LayerNorm)):
        return [("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)]
    raise PruneError(f"cannot reorder the channels of {path} ({type(layer).__name__}); hant reorders "
                     "convolutions, linear layers, batch and layer norms")


def _permute(owner: nn.Module, name: str, dim: int, index: torch.Tensor) -> None:
    value = getattr(owner, name, None)
    if not isinstance(value, torch.Tensor):
        return
    moved = value.detach().index_select(dim, index.to(value.device)).clone()
    if isinstance(value, nn.Parameter):
        setattr(owner, name, nn.Parameter(moved, requires_grad=value.requires_grad))
    else:
        setattr(owner, name, moved)


def reorder_groups(model: nn.Module, groups: Mapping[str, ChannelGroup], orders: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` in which channel ``j`` of group ``name`` is the old channel ``orders[name][j]``.

    ``groups`` come from :func:`~hant.pruning.groups.trace_groups` of ``model``; an order is a
    permutation of the group's channels (:func:`importance_order`). The copy computes the same outputs.
    """
    net = copy.deepcopy(model)
    for name, order in orders.items():
        g = groups[name]
        if sorted(order.tolist()) != list(range(g.width)):
            raise PruneError(f"the order given for channel group {name} is not a permutation of its {g.width} channels")
        done: set[tuple[str, str, int]] = set()
        for m in g.members:
            owner_path, _, leaf = m.path.rpartition(".") if m.is_parameter else (m.path, "", "")
            owner = net.get_submodule(owner_path) if owner_path else net
            pairs = [(leaf, m.pruning_dim)] if m.is_parameter else _tensors(owner, m.outputs, m.path)
            for attr, dim in pairs:
                if (owner_path, attr, dim) in done or not isinstance(getattr(owner, attr, None), torch.Tensor):
                    continue
                done.add((owner_path, attr, dim))
                _permute(owner, attr, dim, _layer_index(m, order, getattr(owner, attr).shape[dim]))
    return net
