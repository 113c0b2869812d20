"""A network being pruned: its current model, its channel groups, and cutting it to new counts."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..ops_zoo.pruning import select_keep
from .apply import pruned_copy
from .groups import GroupGraph, trace_groups

__all__ = ["PruningState", "top_keeps"]


def top_keeps(scores: Mapping[str, torch.Tensor], counts: Mapping[str, int],
              units: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Per group, the sorted indices of its ``counts[g]`` highest-scoring channels, taken in whole
    ``units[g]`` (groups already at that width are left out)."""
    units = units or {}
    return {g: select_keep(scores[g], n, units.get(g, 1)) for g, n in counts.items() if n < scores[g].numel()}


@dataclass
class PruningState:
    """The current network, traced on ``example`` with the teacher's slot paths."""

    model: nn.Module
    example: torch.Tensor
    slot_paths: list[str]

    def graph(self) -> GroupGraph:
        """The current network's groups (traced without the cut check: the teacher's passed it)."""
        return trace_groups(self.model, self.example.to(next(self.model.parameters()).device), self.slot_paths, check=False)

    def counts(self, names: list[str]) -> dict[str, int]:
        """Current channels of the named groups."""
        groups = self.graph().groups
        return {g: groups[g].width for g in names}

    def cut(self, scores: Mapping[str, torch.Tensor], counts: Mapping[str, int]) -> "PruningState":
        """A copy keeping, per group, its ``counts`` highest-scoring channels."""
        graph = self.graph()
        units = {g: graph.groups[g].unit for g in counts}
        model = pruned_copy(self.model, graph.groups, top_keeps(scores, counts, units))
        return PruningState(model, self.example, self.slot_paths)
