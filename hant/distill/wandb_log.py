"""Per-slot training losses of phase 1, sent to the active W&B run if there is one."""
from __future__ import annotations

import math
import sys
from collections import defaultdict
from typing import Iterable


def active_run():
    """The active ``wandb`` run, or None (hant never starts one here; wandb is not imported)."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def slot_loss_metrics(losses: Iterable[tuple[str, float | None]]) -> dict[str, float]:
    """``distill/<slot>/loss_mean``, ``loss_min`` and ``failed`` from (slot, epoch loss or None if failed)."""
    by_slot: dict[str, list[float]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for slot, loss in losses:
        if loss is None or not math.isfinite(loss):
            failed[slot] += 1
        else:
            by_slot[slot].append(loss)
    metrics: dict[str, float] = {}
    for slot in sorted(set(by_slot) | set(failed)):
        values = by_slot.get(slot, [])
        if values:
            metrics[f"distill/{slot}/loss_mean"] = sum(values) / len(values)
            metrics[f"distill/{slot}/loss_min"] = min(values)
        metrics[f"distill/{slot}/failed"] = failed.get(slot, 0)
    return metrics


def log_slot_losses(epoch: int, losses: Iterable[tuple[str, float | None]]) -> bool:
    """Log one epoch's per-slot losses to the active W&B run; returns whether a run took them."""
    run = active_run()
    if run is None:
        return False
    run.log({"distill/epoch": epoch, **slot_loss_metrics(losses)})
    return True
