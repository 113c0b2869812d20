"""A candidate family of one's own, registered by decorator: GhostNet's cheap convolution (a k x k
convolution makes half the output channels, a 3x3 depthwise convolution of those the other half).

hant imports this file when a run or a saved student names it as a zoo plugin."""
from __future__ import annotations

import torch
from torch import nn

from hant import CandidateFamily, CandidateSpec, Slot, register_family


class GhostConv(nn.Module):
    """Primary k x k conv to half the channels, cheap depthwise conv for the rest; residual where shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, residual: bool, relu: bool):
        super().__init__()
        half = cout // 2
        self.primary = nn.Sequential(nn.Conv2d(cin, half, k, stride, k // 2, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        self.cheap = nn.Sequential(nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half))
        self.residual, self.relu = residual, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        y = torch.cat([y, self.cheap(y)], 1)
        if self.residual:
            y = y + x
        return torch.relu(y) if self.relu else y


@register_family("ghost")
class Ghost(CandidateFamily):
    """One candidate per primary kernel size, for conv slots with an even number of output channels."""

    def candidates(self, slot: Slot, kernels: tuple[int, ...] = (1, 3)) -> list[dict]:
        if len(slot.in_shape) != 3 or slot.out_shape[0] % 2:
            return []
        return [{"k": int(k)} for k in kernels]

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        sig = spec.signature
        residual = tuple(sig.in_shape) == tuple(sig.out_shape)
        return GhostConv(sig.in_shape[0], sig.out_shape[0], sig.stride, spec.params["k"], residual, sig.out_nonnegative)
