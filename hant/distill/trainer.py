"""End-to-end training of a classifier: the teacher from scratch, or a student with knowledge distillation.

timm's optimizer, scheduler and EMA factories; AMP on a GPU (bfloat16 on the CPU too with
``amp: bf16``); DistributedDataParallel when torchrun started several processes; a checkpoint
after every epoch, from which a killed run resumes with the same data order it would have had.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from .. import distributed as dist
from ..amp import autocast, autocast_dtype
from ..config import TrainConfig
from ..io import save_torch
from ..progress import progress

log = logging.getLogger(__name__)


def train_device() -> torch.device:
    """The GPU of this process when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | None = None) -> float:
    """Top-1 accuracy (in percent) of ``model`` over ``loader``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    model.train(was_training)
    return 100.0 * correct / max(1, total)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation term: KL(teacher ‖ student) of temperature-softened outputs, times T²."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1), log_target=True, reduction="batchmean"
    ) * (t * t)


@dataclass
class TrainResult:
    """Accuracy history of a training run; the model holds the best-on-validation weights."""

    best_val_accuracy: float
    best_epoch: int
    history: list[dict]


def _set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Make the epoch's batch order a function of (seed, epoch) alone, so a resumed run matches."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif loader.generator is not None:
        loader.generator.manual_seed(seed + epoch)
    elif isinstance(loader.sampler, RandomSampler):  # a loader made without a generator (timm's)
        loader.sampler.generator = torch.Generator().manual_seed(seed + epoch)


def train_classifier(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    kd_temperature: float = 4.0,
    kd_alpha: float = 0.0,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    desc: str = "train",
    checkpoint: Path | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` in place; with a ``teacher`` the loss is ``kd_alpha·KD + (1 − kd_alpha)·CE``.

    Validation picks the best epoch (of the EMA weights when ``cfg.ema_decay`` > 0) and those
    weights are loaded at the end. With ``checkpoint``, state is saved after every epoch and a
    run finds it and resumes; the file is removed when training completes.
    """
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    device = train_device()
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    optimizer = create_optimizer_v2(model, opt=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_loader))
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=cfg.epochs,
        warmup_epochs=min(cfg.warmup_epochs, max(0, cfg.epochs - 1)),
        warmup_lr=cfg.lr * 0.01,
        min_lr=cfg.lr * 1e-3,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    amp_dtype = autocast_dtype(device, cfg.amp, float16=True)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
    net = nn.parallel.DistributedDataParallel(model) if dist.is_distributed() else model

    start_epoch, best_acc, best_epoch, best_state, history = 0, -1.0, -1, None, []
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        start_epoch, best_acc, best_epoch = state["epoch"] + 1, state["best_acc"], state["best_epoch"]
        best_state, history = state["best_state"], state["history"]
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        log.info("%s: resuming after epoch %d from %s", desc, state["epoch"], checkpoint)

    for epoch in progress(range(start_epoch, cfg.epochs), desc=desc, unit="epoch", total=cfg.epochs - start_epoch):
        net.train()
        _set_epoch(train_loader, seed, epoch)
        total_loss = 0.0
        for i, (x, y) in enumerate(train_loader):
            x, y = x.to(device), y.to(device)
            if augment is not None:
                x = augment(x)
            with autocast(device, amp_dtype):
                logits = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                if teacher is not None and kd_alpha > 0:
                    with torch.no_grad():
                        teacher_logits = teacher(x)
                    loss = kd_alpha * kd_loss(logits.float(), teacher_logits.float(), kd_temperature) + (1 - kd_alpha) * loss
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step = epoch * steps_per_epoch + i + 1
            scheduler.step_update(num_updates=step)
            if ema is not None:
                ema.update(model, step=step)
            total_loss += loss.item()
        scheduler.step(epoch + 1)
        judged = ema.module if ema is not None else model
        val_acc = evaluate(judged, val_loader, device)
        history.append({"epoch": epoch, "loss": total_loss / steps_per_epoch, "val_accuracy": val_acc})
        log.info("%s epoch %d: loss %.4f, val accuracy %.2f%%", desc, epoch, total_loss / steps_per_epoch, val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
        if checkpoint is not None and dist.is_main():
            _save_checkpoint(checkpoint, model, optimizer, scheduler, ema, scaler, epoch, best_acc, best_epoch, best_state, history)
        dist.barrier()
    if best_state is not None:
        model.load_state_dict(best_state)
    if checkpoint is not None and dist.is_main():
        Path(checkpoint).unlink(missing_ok=True)
    return TrainResult(best_acc, best_epoch, history)


def rng_state() -> dict:
    """Every global random stream training draws from (torch, CUDA, NumPy, Python), to checkpoint."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [(int(v) if isinstance(v, (int, np.integer)) else torch.from_numpy(v.astype(np.int64)) if isinstance(v, np.ndarray) else v)
                  for v in np.random.get_state()],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` saved, so a resumed run draws the numbers the killed one would have."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])


def _save_checkpoint(path, model, optimizer, scheduler, ema, scaler, epoch, best_acc, best_epoch, best_state, history) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": epoch,
        "best_acc": best_acc,
        "best_epoch": best_epoch,
        "best_state": best_state,
        "history": history,
        "rng": rng_state(),
    }
    save_torch(path, state)
