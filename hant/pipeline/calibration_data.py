"""Real inputs for int8 calibration: training images, and the teacher's inputs to every slot on them."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..deploy import CALIBRATION_SAMPLES, INT8
from ..distill.capture import SlotCapture
from ..slots import Slot
from .context import Context

CAPTURE_BATCH = 64
"""Images per teacher forward pass while slot inputs are captured."""


def run_precisions(ctx: Context) -> list[str]:
    """Every precision a slot may run in: the target's dtype first, then ``zoo.precisions``."""
    return list(dict.fromkeys([ctx.recipe.target.dtype, *ctx.recipe.zoo.precisions]))


def needs_calibration(precisions: Sequence[str]) -> bool:
    """True when some precision is int8, which is calibrated on real data."""
    return INT8 in precisions


@torch.no_grad()
def slot_inputs(model: nn.Module, slots: Sequence[Slot], images: torch.Tensor,
                batch_size: int = CAPTURE_BATCH) -> dict[str, np.ndarray]:
    """Per slot path, ``model``'s input to that slot on ``images`` (``model`` in eval mode, ``batch_size``
    images per forward pass), as float32 arrays with one row per image."""
    per_slot: dict[str, list[torch.Tensor]] = {s.path: [] for s in slots}
    with SlotCapture(model.eval(), slots) as capture:
        for x in images.split(batch_size):
            io = capture.run(x)
            for slot in slots:
                per_slot[slot.path].append(io[slot.name][0].float().clone())
    return {path: torch.cat(xs).numpy() for path, xs in per_slot.items()}


def calibration_images(ctx: Context, samples: int = CALIBRATION_SAMPLES) -> np.ndarray:
    """Up to ``samples`` training images in a fixed order, as float32: what whole networks calibrate on."""
    images: list[torch.Tensor] = []
    taken = 0
    for x, _ in ctx.calibration_loader(min(samples, CAPTURE_BATCH)):
        images.append(x[: samples - taken])
        taken += len(images[-1])
        if taken >= samples:
            break
    return torch.cat(images).float().numpy()


def task_calibration(ctx: Context, samples: int = CALIBRATION_SAMPLES) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`calibration_images`, and per slot path the teacher's input to that slot on them."""
    images = calibration_images(ctx, samples)
    return images, slot_inputs(ctx.teacher, ctx.slots, torch.from_numpy(images), min(samples, CAPTURE_BATCH))
