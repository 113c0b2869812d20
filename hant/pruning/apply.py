"""Cut channel groups out of a network (or out of one block of it) with Torch-Pruning's per-layer
pruning functions, at the indices its dependency graph gave each layer."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from .groups import ChannelGroup, Member

__all__ = ["cut_groups", "first_channels", "pruned_copy"]


def _relative(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    if path == prefix:
        return ""
    if path.startswith(prefix + "."):
        return path[len(prefix) + 1 :]
    return None


def _apply(module: nn.Module, member: Member, rel: str, removed: list[int]) -> None:
    member.prune.__self__.pruning_dim = member.pruning_dim
    if member.is_parameter:
        owner_path, _, leaf = rel.rpartition(".")
        owner = module.get_submodule(owner_path) if owner_path else module
        setattr(owner, leaf, member.prune(getattr(owner, leaf), removed))
    else:
        member.prune(module.get_submodule(rel) if rel else module, removed)


def cut_groups(
    module: nn.Module, groups: Mapping[str, ChannelGroup], keeps: Mapping[str, torch.Tensor], prefix: str = ""
) -> nn.Module:
    """Cut ``module`` in place so that group ``name`` keeps channels ``keeps[name]``; returns it.

    ``prefix`` is the module's own path in the network the groups were traced on: only the group
    layers under it are cut (so one block can be cut as the network would be). Indices are those of
    the traced network, so every layer is cut once, with the removals of all groups through it.
    """
    removals: dict[tuple[str, object], tuple[Member, str, set[int]]] = {}
    for name, keep in keeps.items():
        g = groups[name]
        kept = {int(k) for k in keep}
        if len(kept) == g.width:
            continue
        for m in g.members:
            rel = _relative(m.path, prefix)
            if rel is None:
                continue
            entry = removals.setdefault((m.path, m.prune), (m, rel, set()))
            entry[2].update(i for i, r in zip(m.local, m.root) if r not in kept)
    for member, rel, removed in removals.values():
        if removed:
            _apply(module, member, rel, sorted(removed))
    return module


def pruned_copy(module: nn.Module, groups: Mapping[str, ChannelGroup], keeps: Mapping[str, torch.Tensor], prefix: str = "") -> nn.Module:
    """A deep copy of ``module`` cut by :func:`cut_groups`."""
    return cut_groups(copy.deepcopy(module), groups, keeps, prefix)


def first_channels(counts: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Keep-indices that take the first ``count`` channels of each group (shape only: for timing)."""
    return {name: torch.arange(n) for name, n in counts.items()}
