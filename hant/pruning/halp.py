"""HALP (Shen et al., 2022): latency-saliency knapsack, pruning while training.

Training runs for ``steps`` intervals. During each, the BatchNorm Taylor importance of every
channel group is averaged over the iterations; at its end the linked knapsack of
:class:`~hant.pruning.space.PruneSpace` keeps the most important channels whose lookup-table latency
fits that step's target, which falls linearly from the teacher's latency to the budget, and the
network is cut (channels pruned earlier stay pruned). The last step is re-solved with a tighter
budget until the measured network fits. Fine-tuning follows, outside this module.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..distill.trainer import kd_loss
from ..errors import InfeasibleBudgetError
from .importance import GradientImportance
from .space import PruneSpace
from .state import PruningState

log = logging.getLogger(__name__)

__all__ = ["HalpSchedule", "halp_prune", "step_targets"]


@dataclass
class HalpSchedule:
    """Pruning steps spread over training."""

    steps: int = 4
    epochs_per_step: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    kd_alpha: float = 0.7
    kd_temperature: float = 4.0
    history: list[dict] = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    """The importance the last step pruned by (group -> one score per channel it then had)."""


def step_targets(start_ms: float, budget_ms: float, steps: int) -> list[float]:
    """Latency targets of the pruning steps: linear from ``start_ms`` to ``budget_ms``."""
    return [start_ms - (k + 1) / steps * (start_ms - budget_ms) for k in range(steps)]


def _train_interval(
    model: nn.Module, loader: DataLoader, sched: HalpSchedule, teacher: nn.Module | None,
    augment: Callable | None, saliency: GradientImportance, device: torch.device,
) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=sched.lr, momentum=sched.momentum, weight_decay=sched.weight_decay)
    model.train()
    total, n = 0.0, 0
    for _ in range(sched.epochs_per_step):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if augment is not None:
                x = augment(x)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if teacher is not None and sched.kd_alpha > 0:
                with torch.no_grad():
                    t = teacher(x)
                loss = sched.kd_alpha * kd_loss(logits, t, sched.kd_temperature) + (1 - sched.kd_alpha) * loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            saliency.update()
            opt.step()
            total, n = total + loss.item(), n + 1
    return total / max(1, n)


def halp_prune(
    teacher: nn.Module,
    space: PruneSpace,
    example: torch.Tensor,
    loader: DataLoader,
    budget_ms: float,
    sched: HalpSchedule,
    *,
    augment: Callable | None = None,
    fit_last: Callable[[Callable[[float], nn.Module]], nn.Module] | None = None,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Prune a copy of ``teacher`` to ``budget_ms`` (lookup-table latency) by HALP's schedule.

    ``fit_last(build)``, when given, chooses the last step's budget (``build(budget_ms)`` returns
    the network cut at that budget), e.g. :func:`hant.pruning.verify.fit_to_fraction`. Training runs on
    ``device`` (model, teacher and batches); the network returned is on the CPU.
    """
    import copy

    device = torch.device(device)
    teacher_on_device = copy.deepcopy(teacher).to(device).eval()
    state = PruningState(copy.deepcopy(teacher), example, [s.path for s in space.slots])
    state.model.requires_grad_(True)
    names = list(space.full_counts())
    targets = step_targets(space.predict_ms(space.full_counts()), budget_ms, sched.steps)
    for k, target in enumerate(targets):
        graph = state.graph()
        saliency = GradientImportance(state.model.to(device), graph.groups.values(), "bn_taylor")
        loss = _train_interval(state.model, loader, sched, teacher_on_device, augment, saliency, device)
        state.model.cpu()
        scores = saliency.scores()
        sched.scores = scores
        limits = state.counts(names)

        def build(b: float, state: PruningState = state, scores: dict = scores, limits: dict = limits) -> PruningState:
            return state.cut(scores, space.widths(scores, b, limits))

        if k == len(targets) - 1 and fit_last is not None:
            holder: dict[str, PruningState] = {}

            def build_model(b: float) -> nn.Module:
                holder["s"] = build(b)
                return holder["s"].model

            fit_last(build_model)
            state = holder["s"]
        else:
            try:
                state = build(target)
            except InfeasibleBudgetError:  # an early step's target below the narrowest network
                state = state.cut(scores, space.min_counts(limits))
        counts = state.counts(names)
        sched.history.append({"step": k, "target_ms": target, "loss": loss, "predicted_ms": space.predict_ms(counts)})
        log.info("HALP step %d: target %.3f ms, predicted %.3f ms, loss %.4f", k, target, sched.history[-1]["predicted_ms"], loss)
    return state.model
