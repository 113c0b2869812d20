"""Training one chunk of candidates: one no-grad teacher forward per batch feeds them all.

Each candidate receives its slot's captured teacher input, is compared with the captured
teacher output, and steps its own Adam right away, so only one autograd graph is alive at a
time. The learning rate is cosine-decayed over the whole schedule by global step, so a
candidate's run does not depend on its chunk. Losses are read back once per batch.
"""
from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import torch
from torch import nn

from ..config import DistillConfig
from ..errors import HantError
from ..ops_zoo import CandidateSpec
from ..slots import Slot
from .capture import SlotCapture
from .losses import feature_loss
from .stream import EpochStream

log = logging.getLogger(__name__)


class DistillError(HantError):
    """A candidate breaks an assumption of phase 1 (for instance, it changes its input in place)."""


@dataclass
class Job:
    """One candidate being trained or scored."""

    slot: Slot
    spec: CandidateSpec
    module: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    start_epoch: int = 0
    loss_sum: float = 0.0
    batches: int = 0
    failed: str | None = None

    @property
    def epoch_loss(self) -> float | None:
        """Mean training loss of the last epoch (None once failed)."""
        return None if self.failed else self.loss_sum / max(1, self.batches)


def cosine(step: int, total: int) -> float:
    """Cosine decay factor from 1 at step 0 to 0 at ``total``."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


def unique_slots(jobs: Sequence[Job]) -> list[Slot]:
    return list({j.slot.name: j.slot for j in jobs}.values())


def make_optimizer(module: nn.Module, cfg: DistillConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _call_hook(module: nn.Module, name: str, *args) -> None:
    """Call ``module.<name>(*args)`` where a candidate defines it (sparse training's mask schedule)."""
    hook = getattr(module, name, None)
    if callable(hook):
        hook(*args)


class ChunkTrainer:
    """``step(x, step)`` trains every live job of a chunk on one batch (``step`` counts batches from
    the start of the schedule); use as a context manager. A candidate that defines
    ``schedule_step(step, total)`` and ``observe_loss(loss)`` gets them around its training step."""

    def __init__(
        self,
        teacher: nn.Module,
        jobs: Sequence[Job],
        cfg: DistillConfig,
        steps_per_epoch: int,
        autocast: Callable[[], ContextManager] | None = None,
    ):
        self.jobs = list(jobs)
        self.cfg = cfg
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.loss_fn = feature_loss(cfg.loss)
        self.autocast = autocast or nullcontext
        self.capture = SlotCapture(teacher, unique_slots(jobs), autocast=self.autocast())
        for job in self.jobs:
            job.module.train()
            if job.optimizer is None:
                job.optimizer = make_optimizer(job.module, cfg)

    def __enter__(self) -> "ChunkTrainer":
        self.capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.capture.__exit__(*exc)

    def init_from_batch(self, x: torch.Tensor) -> None:
        """Let candidates that define ``init_from_batch(x, target)`` initialise from real slot data."""
        hooked = [j for j in self.jobs if callable(getattr(j.module, "init_from_batch", None))]
        if hooked:
            io = self.capture.run(x)
            for job in hooked:
                x_in, target = io[job.slot.name]
                job.module.init_from_batch(x_in.float(), target.float())

    def step(self, x: torch.Tensor, step: int) -> None:
        """One batch: teacher forward, then forward, loss, backward and Adam step of each live job."""
        io = self.capture.run(x)
        lr = self.cfg.lr * cosine(step, self.total_steps)
        live = [j for j in self.jobs if not j.failed]
        losses = []
        for job in live:
            x_in, target = io[job.slot.name]
            version = x_in._version
            _call_hook(job.module, "schedule_step", step, self.total_steps)
            with self.autocast():
                out = job.module(x_in)
            loss = self.loss_fn(out.float(), target.float())
            if x_in._version != version:
                raise DistillError(
                    f"candidate {job.spec.key} of slot {job.slot.name} changes its input in place; "
                    "make its first operation out of place"
                )
            optimizer = job.optimizer
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _call_hook(job.module, "observe_loss", loss.detach())
            losses.append(loss.detach())
        if not losses:
            return
        for job, value in zip(live, torch.stack(losses).tolist()):
            if math.isfinite(value):
                job.loss_sum += value
                job.batches += 1
            else:
                job.failed = f"loss became {value} in epoch {step // self.steps_per_epoch}"
                log.warning("candidate %s of slot %s failed: %s", job.spec.key, job.slot.name, job.failed)


@torch.no_grad()
def recalibrate_norms(teacher: nn.Module, jobs: Sequence[Job], stream: EpochStream, epoch: int, max_batches: int) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over training batches.

    Momentum-averaged statistics lag the weights of a short schedule; evaluation then sees
    statistics of earlier weights. A no-gradient pass with cumulative averaging fixes that.
    """
    live = [j for j in jobs if not j.failed]
    norms = [m for j in live for m in j.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    for job in live:
        job.module.train()
    with SlotCapture(teacher, unique_slots(live)) as capture:
        for i, x in enumerate(stream.epoch(epoch, augment=False)):
            if i >= max_batches:
                break
            io = capture.run(x)
            for job in live:
                job.module(io[job.slot.name][0])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
