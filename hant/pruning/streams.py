"""A network's residual streams as the op zoo's ``stream_cut`` candidates see them: which stream each
slot reads and writes, which streams the part outside the slots touches, the teacher reordered so
that each stream's first channels are its most important, and the network cut to chosen widths."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .apply import first_channels, pruned_copy
from .groups import GroupGraph, trace_groups
from .importance import weight_importance
from .reorder import importance_order, reorder_groups

__all__ = ["StreamLayout"]


@dataclass
class StreamLayout:
    """The channel groups of a network traced with its slots, read for its prunable streams."""

    graph: GroupGraph
    slot_paths: list[str]

    @classmethod
    def trace(cls, model: nn.Module, input_shape: Sequence[int], slot_paths: Sequence[str]) -> StreamLayout:
        """Trace ``model`` (per-sample ``input_shape``) with Torch-Pruning's dependency graph."""
        example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
        return cls(trace_groups(model, example, list(slot_paths), check=False), list(slot_paths))

    def streams(self) -> list[str]:
        """The prunable groups that reach across slots."""
        return [g.name for g in self.graph.streams()]

    def width(self, stream: str) -> int:
        return self.graph.groups[stream].width

    def _side(self, names: Sequence[str]) -> str | None:
        streams = set(self.streams())
        return names[0] if len(names) == 1 and names[0] in streams else None

    def slot_streams(self, slot_path: str) -> tuple[str | None, str | None]:
        """The stream a slot reads and the one it writes (None where that side is not one prunable stream)."""
        return (self._side(self.graph.slot_inputs.get(slot_path, [])),
                self._side(self.graph.slot_outputs.get(slot_path, [])))

    def _inside(self, path: str) -> bool:
        return any(path == s or path.startswith(s + ".") for s in self.slot_paths)

    def outside_streams(self) -> list[str]:
        """The streams with layers outside every slot (the stem's output, the head's input)."""
        return [g for g in self.streams() if any(not self._inside(p) for p in self.graph.groups[g].paths)]

    def outside_consumers(self, stream: str) -> list[str]:
        """Layers outside every slot whose input channels are ``stream`` (a classifier, a head convolution)."""
        return [p for p in self.graph.groups[stream].consumers if not self._inside(p)]

    def reordered(self, model: nn.Module) -> nn.Module:
        """``model`` (the traced network, or one of its architecture) with every stream's channels sorted
        by the L1 norm of the filters producing them, most important first; it computes the same."""
        importance = weight_importance(model, self.graph.streams(), "l1")
        return reorder_groups(model, self.graph.groups, {g: importance_order(s) for g, s in importance.items()})

    def cut(self, model: nn.Module, counts: Mapping[str, int]) -> nn.Module:
        """A copy of ``model`` whose streams keep their first ``counts[g]`` channels (the rest whole)."""
        return pruned_copy(model, self.graph.groups, first_channels({g: n for g, n in counts.items() if n < self.width(g)}))
