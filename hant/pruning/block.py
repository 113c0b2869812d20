"""One block pruned alone (the op zoo's ``pruned`` family): its inner channel groups, those it can
narrow without changing its input or output, from the same Torch-Pruning graph as whole networks,
cut to a fraction of their width and keeping the channels an importance criterion ranks best."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..errors import ZooError
from ..ops_zoo.pruning import pruned_width
from ..slots import structure_hash
from .apply import pruned_copy
from .groups import ChannelGroup, trace_groups
from .importance import BLOCK_CRITERIA, ActivationSite, output_taylor_importance, weight_importance
from .state import top_keeps

__all__ = ["block_groups", "block_keep_counts", "prune_block", "taylor_reselect"]

_CACHE: dict[tuple[str, tuple[int, ...]], dict[str, ChannelGroup]] = {}


def block_groups(block: nn.Module, in_shape: tuple[int, ...]) -> dict[str, ChannelGroup]:
    """The block's inner groups (traced alone on a random batch of per-sample ``in_shape``): every
    group that neither feeds its output nor reaches its input, and that cuts cleanly."""
    key = (structure_hash(block), tuple(in_shape))
    if key not in _CACHE:
        example = torch.randn(2, *in_shape, generator=torch.Generator().manual_seed(0))
        graph = trace_groups(block, example, [""])
        _CACHE[key] = {n: g for n, g in graph.groups.items() if not g.fixed}
    return _CACHE[key]


def block_keep_counts(groups: Mapping[str, ChannelGroup], width: float, divisor: int) -> dict[str, int]:
    """Channels each group keeps at fraction ``width``: whole units, rounded to the divisor."""
    counts = {}
    for name, g in groups.items():
        step = max(1, divisor // g.unit)
        counts[name] = pruned_width(g.width // g.unit, width, step) * g.unit
    return counts


def _check(groups: Mapping[str, ChannelGroup], block: nn.Module, importance: str) -> None:
    if not groups:
        raise ZooError(f"{type(block).__name__} has no inner channel group to prune")
    if importance not in BLOCK_CRITERIA:
        raise ZooError(f"unknown channel importance {importance!r}; choose one of {list(BLOCK_CRITERIA)}")


def prune_block(block: nn.Module, in_shape: tuple[int, ...], width: float, importance: str = "l1",
                divisor: int = 8) -> nn.Module:
    """A copy of ``block`` whose inner groups keep fraction ``width`` of their channels, the most
    important ones, with the teacher's weights for them. ``taylor`` needs data: here it ranks by
    L1, and :func:`taylor_reselect` re-ranks on a batch."""
    groups = block_groups(block, in_shape)
    _check(groups, block, importance)
    scores = weight_importance(block, groups.values(), "l1" if importance == "taylor" else importance)
    counts = block_keep_counts(groups, width, divisor)
    return pruned_copy(block, groups, top_keeps(scores, counts, {n: g.unit for n, g in groups.items()}))


def taylor_reselect(block: nn.Module, in_shape: tuple[int, ...], width: float,
                    divisor: int) -> Callable[[torch.Tensor, torch.Tensor], nn.Module]:
    """``reselect(x, target)``: ``block`` pruned as :func:`prune_block` does, keeping the channels
    ranked best by first-order Taylor importance on the batch ``(x, target)``."""
    groups = block_groups(block, in_shape)
    _check(groups, block, "taylor")
    counts = block_keep_counts(groups, width, divisor)

    def reselect(x: torch.Tensor, target: torch.Tensor) -> nn.Module:
        scores = output_taylor_importance(block, {n: ActivationSite.of(g) for n, g in groups.items()}, x, target)
        return pruned_copy(block, groups, top_keeps(scores, counts, {n: g.unit for n, g in groups.items()}))

    return reselect
