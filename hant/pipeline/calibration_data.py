"""Real inputs for int8 calibration: training images, and the teacher's inputs to every slot on them."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..deploy import CALIBRATION_SAMPLES, INT8
from ..distill.capture import SlotCapture
from .context import Context


def run_precisions(ctx: Context) -> list[str]:
    """Every precision a slot may run in: the target's dtype first, then ``zoo.precisions``."""
    return list(dict.fromkeys([ctx.recipe.target.dtype, *ctx.recipe.zoo.precisions]))


def needs_calibration(precisions: Sequence[str]) -> bool:
    """True when some precision is int8, which is calibrated on real data."""
    return INT8 in precisions


@torch.no_grad()
def task_calibration(ctx: Context, samples: int = CALIBRATION_SAMPLES) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Up to ``samples`` training images, and per slot path the teacher's input to that slot on them."""
    teacher = ctx.teacher.eval()
    images: list[torch.Tensor] = []
    per_slot: dict[str, list[torch.Tensor]] = {s.path: [] for s in ctx.slots}
    taken = 0
    with SlotCapture(teacher, ctx.slots) as capture:
        for x, _ in ctx.calibration_loader(min(samples, 64)):
            x = x[: samples - taken]
            io = capture.run(x)
            images.append(x)
            for slot in ctx.slots:
                per_slot[slot.path].append(io[slot.name][0].float().clone())
            taken += len(x)
            if taken >= samples:
                break
    arrays = {path: torch.cat(xs).numpy() for path, xs in per_slot.items()}
    return torch.cat(images).float().numpy(), arrays
