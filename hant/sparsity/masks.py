"""Drawing spatial masks and the ratio schedule of sparse training (Grimaldi et al., 2023).

A mask keeps or skips whole output pixels (all channels). It is drawn from a uniform random map
at twice the layer's resolution, average-pooled to it (so skipped pixels come in small clumps
rather than salt-and-pepper), dropping the ``floor(s·H·W)`` lowest pixels. During training the
ratio grows from 0 to its target on ``s·(1 - (1 - t)²)``, t running from 0 at 10 % of the steps
to 1 at 90 %.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RAMP_START, RAMP_END = 0.1, 0.9


def draw_mask(height: int, width: int, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A bool (height, width) mask that is False at ``floor(ratio·height·width)`` pixels."""
    noise = torch.rand(1, 1, 2 * height, 2 * width, generator=generator)
    score = F.adaptive_avg_pool2d(noise, (height, width)).flatten()
    mask = torch.ones(height * width, dtype=torch.bool)
    dropped = math.floor(ratio * height * width + 1e-9)
    if dropped:
        mask[torch.argsort(score)[:dropped]] = False
    return mask.view(height, width)


def ratio_at(step: int, total: int, target: float) -> float:
    """The sparsity ratio of training step ``step`` of ``total``: 0 before 10 % of the steps, the
    target after 90 %, a power-2 polynomial in between."""
    t = (step / max(1, total) - RAMP_START) / (RAMP_END - RAMP_START)
    t = min(1.0, max(0.0, t))
    return target * (1.0 - (1.0 - t) ** 2)
