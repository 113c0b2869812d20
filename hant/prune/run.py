"""One pruning method end to end on a trained teacher: lookup table, widths, measured fit.

Fine-tuning is left to the caller (every method of a comparison gets the same schedule).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Recipe
from ..errors import ConfigError
from ..slots import Slot
from .groups import trace_groups
from .halp import HalpSchedule, halp_prune
from .saliency import lamp_filter_scores
from .space import PruneSpace
from .splamp import splamp_counts
from .state import Pruned
from .verify import fit_measured

__all__ = ["METHODS", "PruneResult", "build_space", "prune_to_budget"]

METHODS = ("halp", "splamp")


@dataclass
class PruneResult:
    """A pruned network (before fine-tuning), its group widths and latencies."""

    model: nn.Module
    counts: dict[str, int]
    predicted_ms: float
    fit_rounds: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


def build_space(recipe: Recipe, teacher: nn.Module, slots: list[Slot], input_shape: tuple[int, ...]) -> PruneSpace:
    """The teacher's pruning space with its lookup table measured on the recipe's target (cached)."""
    example = torch.randn(2, *input_shape)
    graph = trace_groups(teacher, example, [s.path for s in slots])
    space = PruneSpace(graph, slots, tuple(float(f) for f in recipe.prune.fractions), recipe.prune.divisor)
    space.measure(teacher, input_shape, recipe.target, rel_precision=recipe.profile.rel_precision,
                  time_budget_s=recipe.profile.time_budget_s)
    return space


def prune_to_budget(
    recipe: Recipe,
    teacher: nn.Module,
    space: PruneSpace,
    fraction: float,
    train_loader,
    augment=None,
) -> PruneResult:
    """Prune ``teacher`` to ``fraction`` of its latency by ``recipe.prune.method``; the network is
    measured beside the teacher and the budget tightened until it fits (``search.verify_rounds``,
    ``search.margin``)."""
    cfg = recipe.prune
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown prune.method {cfg.method!r}; choose one of {list(METHODS)}")
    input_shape = _input_shape(recipe, teacher)
    example = torch.randn(2, *input_shape)
    names = list(space.full_counts())
    rounds: list[dict] = []

    def fit(build):
        result = fit_measured(
            build, teacher, input_shape, recipe.target, fraction, space.predicted_teacher_ms,
            margin=recipe.search.margin, rounds=recipe.search.verify_rounds,
            rel_precision=recipe.profile.rel_precision, time_budget_s=recipe.profile.time_budget_s,
        )
        rounds.extend(result.rounds)
        return result.result

    history: list[dict] = []
    if cfg.method == "halp":
        ft = recipe.finetune
        sched = HalpSchedule(steps=cfg.steps, epochs_per_step=cfg.epochs_per_step, lr=ft.lr,
                             weight_decay=ft.weight_decay, kd_alpha=ft.kd_alpha, kd_temperature=ft.kd_temperature)
        model = halp_prune(teacher, space, example, train_loader, fraction * space.predicted_teacher_ms, sched,
                           augment=augment, fit_last=fit)
        history = sched.history
    else:
        scores = lamp_filter_scores(teacher, trace_groups(teacher, example, [s.path for s in space.slots]).groups.values())
        base = Pruned(teacher, example, [s.path for s in space.slots])
        model = fit(lambda b: base.cut(scores, splamp_counts(space, scores, b)).model)
    counts = Pruned(model, example, [s.path for s in space.slots]).counts(names)
    return PruneResult(model, counts, space.predict_ms(counts), rounds, history)


def _input_shape(recipe: Recipe, teacher: nn.Module) -> tuple[int, ...]:
    conv = next(m for m in teacher.modules() if isinstance(m, nn.Conv2d))
    return (conv.in_channels, recipe.data.image_size, recipe.data.image_size)
