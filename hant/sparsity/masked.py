"""A convolution that skips the output pixels of a spatial mask, and a block whose convolutions do.

A skipped pixel takes the value the convolution gives a zero input (its bias, or 0); the
BatchNorm that follows then maps it to the folded bias, so the deployed skip is exact. In eval
mode on the CPU the compiled kernel (``hant.kernels``) computes only the kept pixels; in training
and on other devices the dense convolution is masked.

Sparse training (``SparseBlock.schedule_step``): masks are redrawn every step at the scheduled
ratio (``ratio_at``); from 90 % of the steps the ratio is the target and masks are still
redrawn until 95 %, remembering the masks of the lowest-loss batch; then those are frozen.
"""
from __future__ import annotations

import copy
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ZooError
from ..kernels import masked_conv2d
from .masks import RAMP_END, draw_mask, ratio_at

log = logging.getLogger(__name__)

FREEZE_AT = 0.95
"""Fraction of the training steps after which the best masks seen at the target ratio are frozen."""
MASK_SEED = 0
"""Seed of the masks a freshly built block starts with, so that a spec builds the same module."""


def check_ratio(ratio: float, where: str) -> float:
    """``ratio`` as a float, or a ZooError naming ``where`` when it is outside [0, 1)."""
    value = float(ratio)
    if not 0.0 <= value < 1.0 or math.isnan(value):
        raise ZooError(f"{where} is {ratio!r}; an activation sparsity ratio must lie in [0, 1)")
    return value


def maskable(module: nn.Module) -> str | None:
    """None when the kernel supports this convolution, else why not (it then stays dense)."""
    if not isinstance(module, nn.Conv2d):
        return f"{type(module).__name__} is not a Conv2d"
    if module.groups != 1:
        return f"it is a grouped convolution (groups={module.groups}); the masked kernel supports groups=1 only"
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        return f"its padding ({module.padding_mode}, {module.padding!r}) is not explicit zero padding"
    return None


class MaskedConv2d(nn.Module):
    """``conv`` computed only at the pixels where the bool buffer ``mask`` (out H × out W) is True."""

    def __init__(self, conv: nn.Conv2d, out_hw: tuple[int, int], ratio: float):
        super().__init__()
        reason = maskable(conv)
        if reason:
            raise ZooError(f"cannot mask this convolution: {reason}")
        self.conv = conv
        self.ratio = check_ratio(ratio, "the mask ratio")
        gen = torch.Generator().manual_seed(MASK_SEED)
        self.register_buffer("mask", draw_mask(out_hw[0], out_hw[1], self.ratio, gen))
        self._kept: tuple[int, int, torch.Tensor] | None = None

    def set_mask(self, mask: torch.Tensor) -> None:
        """Replace the mask (same shape) in place."""
        self.mask.copy_(mask)

    def kept_indices(self) -> torch.Tensor:
        """Flat indices of the kept output pixels (cached until the mask changes)."""
        stamp = (self.mask.data_ptr(), self.mask._version)
        if self._kept is None or self._kept[:2] != stamp:
            self._kept = (*stamp, self.mask.flatten().nonzero().flatten().cpu())
        return self._kept[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if not self.training and x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad):
            return masked_conv2d(x, c.weight, c.bias, self.kept_indices(), c.stride, c.padding, c.dilation)
        y = F.conv2d(x, c.weight, c.bias, c.stride, c.padding, c.dilation)
        fill = c.bias.view(1, -1, 1, 1) if c.bias is not None else y.new_zeros(())
        return torch.where(self.mask, y, fill)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:g}, out={tuple(self.mask.shape)}"


def _output_sizes(block: nn.Module, in_shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """Module path → output (H, W) of every Conv2d of ``block`` on a zero input of ``in_shape``."""
    probe = copy.deepcopy(block).eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, path=path: sizes.__setitem__(path, tuple(out.shape[-2:])))
        for path, m in probe.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            probe(torch.zeros(1, *in_shape))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def sparsify_block(block: nn.Module, in_shape: tuple[int, ...], ratio: float) -> "SparseBlock":
    """A copy of ``block`` with every supported convolution masked at ``ratio``; others stay dense."""
    sizes = _output_sizes(block, in_shape)
    out = copy.deepcopy(block)
    for path, hw in sizes.items():
        conv = out.get_submodule(path)
        if maskable(conv) is None:
            parent, _, name = path.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, name, MaskedConv2d(conv, hw, ratio))
    return SparseBlock(out, ratio)


def dense_layers(block: nn.Module) -> list[tuple[str, str]]:
    """(path, reason) of every convolution of ``block`` that the kernel cannot mask."""
    return [(p, r) for p, m in block.named_modules() if isinstance(m, nn.Conv2d) and (r := maskable(m))]


class SparseBlock(nn.Module):
    """A block whose masked convolutions follow the sparse-training schedule.

    Phase 1 calls ``schedule_step(step, total)`` before and ``observe_loss(loss)`` after each
    training step.
    """

    def __init__(self, block: nn.Module, ratio: float):
        super().__init__()
        self.block = block
        self.ratio = ratio
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        self._best: tuple[float, list[torch.Tensor]] | None = None
        self._searching = False

    def masked(self) -> list[MaskedConv2d]:
        return [m for m in self.block.modules() if isinstance(m, MaskedConv2d)]

    def schedule_step(self, step: int, total: int) -> None:
        """Draw this step's masks, or freeze the best ones once ``FREEZE_AT`` of ``total`` is reached."""
        if bool(self.frozen):
            return
        if step >= min(total - 1, math.ceil(FREEZE_AT * total)):
            self.freeze()
            return
        ratio = ratio_at(step, total, self.ratio)
        self._searching = step >= RAMP_END * total
        for m in self.masked():
            m.set_mask(draw_mask(*m.mask.shape, ratio).to(m.mask.device))

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Remember the current masks when they gave the lowest loss seen at the target ratio."""
        if self._searching and not bool(self.frozen):
            value = float(loss)
            if self._best is None or value < self._best[0]:
                self._best = (value, [m.mask.clone() for m in self.masked()])

    def freeze(self) -> None:
        """Fix the masks: the best seen at the target ratio, or fresh ones at it if none was seen."""
        if self._best is not None:
            for m, mask in zip(self.masked(), self._best[1]):
                m.set_mask(mask)
        else:
            for m in self.masked():
                m.set_mask(draw_mask(*m.mask.shape, self.ratio).to(m.mask.device))
        self.frozen.fill_(True)
        self._best, self._searching = None, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
