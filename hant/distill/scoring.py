"""Held-out scores of candidates: the distillation loss and the swap-in KL divergence and accuracy.

One teacher forward per validation batch feeds every candidate of a chunk; each candidate's
output is compared with its slot's teacher output and then, if swap-in scoring is on, pushed
through the rest of the teacher (see ``swap.py``). A ``stream_cut`` candidate's output takes the
teacher's values in the stream channels it drops, so that it is scored on the channels it keeps:
the narrower stream is scored once, for all its blocks (``stream_scores.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, get_args

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..config import DistillScore
from ..ops_zoo.families.stream_cut import STREAM_FAMILY
from ..slots import Slot
from .capture import SlotCapture
from .chunk import Job, unique_slots
from .swap import SwapIn

SCORES: tuple[str, ...] = get_args(DistillScore)


@dataclass
class Scores:
    """What the validation pass measured for one candidate."""

    feature_loss: float
    """Total squared error over total target energy (``nmse``) or over element count (``mse``)."""
    swap_kl: float | None = None
    """Mean KL(teacher ‖ teacher with this slot replaced) per sample, natural log."""
    swap_accuracy: float | None = None
    """Top-1 accuracy (percent) of the teacher with this slot replaced."""


def _kept_output(job: Job, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``out`` with the stream channels a ``stream_cut`` candidate drops taken from the teacher's ``target``."""
    if job.spec.family != STREAM_FAMILY:
        return out
    kept = int(job.spec.params["out"])
    return torch.cat([out[:, :kept], target[:, kept:]], 1)


def _shares_memory(a: torch.Tensor, *others: torch.Tensor) -> bool:
    ptr = a.untyped_storage().data_ptr()
    return any(ptr == o.untyped_storage().data_ptr() for o in others)


@torch.no_grad()
def teacher_accuracy(teacher: torch.nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Top-1 accuracy (percent) of the teacher on ``loader``."""
    correct = total = 0
    for x, y in loader:
        logits = teacher(x.to(device))
        correct += (logits.argmax(1).cpu() == y).sum().item()
        total += y.numel()
    return 100.0 * correct / max(1, total)


@torch.no_grad()
def score_jobs(
    teacher: torch.nn.Module,
    jobs: Sequence[Job],
    loader: DataLoader,
    loss: str,
    swap: SwapIn | None,
    device: torch.device,
) -> dict[tuple[str, str], Scores]:
    """Scores of every job on ``loader``, keyed by (slot name, candidate uid)."""
    sums = {(j.slot.name, j.spec.uid): [0.0, 0.0, 0, 0.0, 0] for j in jobs}
    samples = 0
    for job in jobs:
        job.module.eval()
    slots: list[Slot] = unique_slots(jobs)
    points = swap.points if swap is not None else ()
    with SlotCapture(teacher, slots, extra=points) as capture:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            io = capture.run(x)
            log_p = F.log_softmax(capture.logits.float(), dim=1)
            samples += y.numel()
            for job in jobs:
                s = sums[job.slot.name, job.spec.uid]
                x_in, target = io[job.slot.name]
                out = _kept_output(job, job.module(x_in), target)
                s[0] += (out - target).pow(2).sum().item()
                s[1] += target.pow(2).sum().item()
                s[2] += target.numel()
                if swap is None or not swap.available[job.slot.name]:
                    continue
                if _shares_memory(out, x_in, target):
                    out = out.clone()
                logits = swap.logits(job.slot.name, x, capture.extra, out).float()
                s[3] += F.kl_div(F.log_softmax(logits, dim=1), log_p, log_target=True, reduction="sum").item()
                s[4] += (logits.argmax(1) == y).sum().item()
    out_scores = {}
    for job in jobs:
        err, energy, count, kl, correct = sums[job.slot.name, job.spec.uid]
        feature = err / max(energy, 1e-12) if loss == "nmse" else err / max(count, 1)
        if swap is None or not swap.available[job.slot.name]:
            out_scores[job.slot.name, job.spec.uid] = Scores(feature)
        else:
            out_scores[job.slot.name, job.spec.uid] = Scores(feature, kl / max(1, samples), 100.0 * correct / max(1, samples))
    return out_scores
