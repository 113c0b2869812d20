"""End-to-end training of a classifier: the teacher from scratch, or a student with knowledge distillation."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..progress import progress

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy (in percent) of ``model`` over ``loader``."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
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
) -> TrainResult:
    """Train with timm's optimizer and cosine schedule; with a ``teacher``, the loss is
    ``kd_alpha * KD + (1 - kd_alpha) * CE``. The best-on-validation weights are restored at the end."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    optimizer = create_optimizer_v2(model, opt=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_loader))
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=cfg.epochs * steps_per_epoch,
        warmup_t=min(cfg.warmup_epochs, max(0, cfg.epochs - 1)) * steps_per_epoch,
        warmup_lr_init=cfg.lr * 0.01,
        lr_min=cfg.lr * 1e-3,
        t_in_epochs=False,
    )
    if teacher is not None:
        teacher.eval()
    best_acc, best_epoch, best_state = -1.0, -1, None
    history = []
    step = 0
    for epoch in progress(range(cfg.epochs), desc=desc, unit="epoch"):
        model.train()
        total_loss = 0.0
        for x, y in train_loader:
            if augment is not None:
                x = augment(x)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if teacher is not None and kd_alpha > 0:
                with torch.no_grad():
                    teacher_logits = teacher(x)
                loss = kd_alpha * kd_loss(logits, teacher_logits, kd_temperature) + (1 - kd_alpha) * loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            total_loss += loss.item()
        val_acc = evaluate(model, val_loader)
        history.append({"epoch": epoch, "loss": total_loss / steps_per_epoch, "val_accuracy": val_acc})
        log.info("%s epoch %d: loss %.4f, val accuracy %.2f%%", desc, epoch, total_loss / steps_per_epoch, val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch, best_state = val_acc, epoch, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(best_acc, best_epoch, history)
