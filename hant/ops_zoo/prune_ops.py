"""Per-layer cut primitives of transformer prune plans: keep a subset of one layer's input or output
channels, where the output may stack copies of the group (a fused q/k/v projection). Convolutional
blocks are cut by Torch-Pruning's functions (``hant.pruning.apply``).

Convolutions and linear layers are both handled (a linear layer's features are its channels).
Each primitive edits the layer in place; callers cut a copy, never the teacher.
"""

from __future__ import annotations

import torch
from torch import nn


def _cut(param: torch.Tensor, dim: int, keep: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(param.detach().index_select(dim, keep).clone(), requires_grad=param.requires_grad)


def _set_width(layer: nn.Module, out: int | None = None, inp: int | None = None) -> None:
    if isinstance(layer, nn.Linear):
        if out is not None:
            layer.out_features = out
        if inp is not None:
            layer.in_features = inp
    else:
        if out is not None:
            layer.out_channels = out
        if inp is not None:
            layer.in_channels = inp


def stacked_index(keep: torch.Tensor, width: int, copies: int) -> torch.Tensor:
    """Indices of ``keep`` in each of ``copies`` stacked blocks of ``width`` rows (e.g. q, k, v)."""
    return torch.cat([keep + i * width for i in range(copies)])


def prune_out(layer: nn.Module, keep: torch.Tensor, width: int | None = None) -> None:
    """Keep only output channels ``keep`` of a non-grouped conv or a linear layer.

    When the layer's output stacks several copies of the group (``out == copies * width``,
    as a fused q/k/v projection does), ``keep`` is applied to every copy.
    """
    rows = layer.weight.shape[0]
    if width and rows != width and rows % width == 0:
        keep = stacked_index(keep, width, rows // width)
    layer.weight = _cut(layer.weight, 0, keep)
    if layer.bias is not None:
        layer.bias = _cut(layer.bias, 0, keep)
    _set_width(layer, out=len(keep))


def prune_in(layer: nn.Module, keep: torch.Tensor) -> None:
    """Keep only input channels ``keep`` of a non-grouped conv or a linear layer."""
    layer.weight = _cut(layer.weight, 1, keep)
    _set_width(layer, inp=len(keep))


def prune_norm(norm: nn.Module, keep: torch.Tensor) -> None:
    """Keep only channels ``keep`` of a BatchNorm- or LayerNorm-like layer (affine and statistics)."""
    for name in ("weight", "bias"):
        p = getattr(norm, name, None)
        if isinstance(p, nn.Parameter):
            setattr(norm, name, _cut(p, 0, keep))
    for name in ("running_mean", "running_var"):
        b = getattr(norm, name, None)
        if isinstance(b, torch.Tensor):
            setattr(norm, name, b.index_select(0, keep).clone())
    if hasattr(norm, "num_features"):
        norm.num_features = len(keep)
    if hasattr(norm, "normalized_shape"):
        norm.normalized_shape = (len(keep),)


def in_width(layer: nn.Module) -> int:
    """Input channels (or features) of a conv or linear layer."""
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
