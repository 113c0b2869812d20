"""Cut channel groups out of a network (or out of one block of it) with the per-layer primitives."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from ..ops_zoo.prune_ops import prune_depthwise, prune_in, prune_norm, prune_out
from .groups import ChannelGroup

__all__ = ["cut_groups", "first_channels", "pruned_copy"]


def _relative(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    if path == prefix:
        return ""
    if path.startswith(prefix + "."):
        return path[len(prefix) + 1 :]
    return None


def cut_groups(
    module: nn.Module, groups: Mapping[str, ChannelGroup], keeps: Mapping[str, torch.Tensor], prefix: str = ""
) -> nn.Module:
    """Cut ``module`` in place so that group ``name`` keeps channels ``keeps[name]``; returns it.

    ``prefix`` is the module's own path in the network the groups were traced on: only the group
    layers under it are cut (so one block can be cut as the network would be).
    """
    for name, keep in keeps.items():
        g = groups[name]
        if len(keep) == g.width:
            continue
        for attr, cut in (("producers", prune_out), ("consumers", prune_in), ("norms", prune_norm), ("depthwise", prune_depthwise)):
            for path in getattr(g, attr):
                rel = _relative(path, prefix)
                if rel is not None:
                    cut(module.get_submodule(rel), keep)
    return module


def pruned_copy(module: nn.Module, groups: Mapping[str, ChannelGroup], keeps: Mapping[str, torch.Tensor], prefix: str = "") -> nn.Module:
    """A deep copy of ``module`` cut by :func:`cut_groups`."""
    return cut_groups(copy.deepcopy(module), groups, keeps, prefix)


def first_channels(counts: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Keep-indices that take the first ``count`` channels of each group (shape only: for timing)."""
    return {name: torch.arange(n) for name, n in counts.items()}
