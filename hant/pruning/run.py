"""One pruning method end to end on a trained teacher: channel groups, lookup table, widths,
measured fit. The prune stages of the pipeline (``hant.pipeline.prune_stages``) and the benchmarks
call these; fine-tuning is left to the caller (every method of a comparison gets the same schedule).
"""
from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..config import PruneMethod, Recipe
from ..deploy import INT8
from ..errors import ConfigError, DeployError
from ..latency import LatencyTarget
from ..slots import Slot
from .groups import check_prunable, trace_groups
from .halp import HalpSchedule, halp_prune
from .importance import lamp_filter_scores
from .space import PruneSpace
from .splamp import splamp_counts
from .state import PruningState
from .verify import fit_to_fraction

__all__ = ["METHODS", "PruneResult", "build_space", "check_calibration", "prune_to_budget"]

METHODS = typing.get_args(PruneMethod)


@dataclass
class PruneResult:
    """A pruned network (before fine-tuning), its group widths and latencies."""

    model: nn.Module
    counts: dict[str, int]
    predicted_ms: float
    fit_rounds: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    """The importance the widths were chosen by (group -> per-channel scores)."""


def check_calibration(target: LatencyTarget, calibration: np.ndarray | None) -> None:
    """A DeployError when ``target`` is int8 and there are no task inputs to quantize its networks on."""
    if target.dtype == INT8 and (calibration is None or len(calibration) == 0):
        raise DeployError(
            f"pruning for {target.describe()} times every network quantized to int8 on the task's own inputs and got "
            "no calibration data; pass calibration (training images), or choose a floating-point dtype"
        )


def build_space(
    recipe: Recipe, teacher: nn.Module, slots: list[Slot], input_shape: tuple[int, ...],
    latency_ms: Mapping[str, float] | None = None, teacher_ms: float | None = None,
    calibration: np.ndarray | None = None,
) -> PruneSpace:
    """The teacher's pruning space; its lookup table from ``latency_ms`` (uid -> ms, with the measured
    ``teacher_ms``) or else measured on the recipe's target (shared cache first), int8 entries
    quantized on ``calibration`` (the task's per-sample network inputs)."""
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(recipe.seed))
    graph = trace_groups(teacher, example, [s.path for s in slots])
    check_prunable(graph, recipe.teacher.model)
    space = PruneSpace(graph, slots, tuple(float(f) for f in recipe.prune.fractions), recipe.prune.divisor)
    if latency_ms is not None:
        space.set_latencies(teacher, latency_ms, float(teacher_ms))
    else:
        check_calibration(recipe.target, calibration)
        space.measure(teacher, input_shape, recipe.target, calibration, rel_precision=recipe.profile.rel_precision,
                      time_budget_s=recipe.profile.time_budget_s)
    return space


def prune_to_budget(
    recipe: Recipe,
    teacher: nn.Module,
    space: PruneSpace,
    fraction: float,
    input_shape: tuple[int, ...],
    train_loader=None,
    augment=None,
    device: torch.device | str = "cpu",
    calibration: np.ndarray | None = None,
) -> PruneResult:
    """Prune ``teacher`` to ``fraction`` of its latency by ``recipe.prune.method``; the network is
    measured beside the teacher (both quantized on ``calibration`` on an int8 target) and the budget
    tightened until it fits (``search.verify_rounds``, ``search.margin``). HALP trains on ``device``
    with batches from ``train_loader``."""
    cfg = recipe.prune
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown prune.method {cfg.method!r}; choose one of {list(METHODS)}")
    check_calibration(recipe.target, calibration)
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(recipe.seed))
    paths = [s.path for s in space.slots]
    names = list(space.full_counts())
    rounds: list[dict] = []

    def fit(build):
        result = fit_to_fraction(
            build, teacher, input_shape, recipe.target, fraction, space.predicted_teacher_ms,
            margin=recipe.search.margin, rounds=recipe.search.verify_rounds, calibration=calibration,
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
                           augment=augment, fit_last=fit, device=device)
        history, scores = sched.history, sched.scores
    else:
        scores = lamp_filter_scores(teacher, space.graph.groups.values())
        base = PruningState(teacher, example, paths)
        model = fit(lambda b: base.cut(scores, splamp_counts(space, scores, b)).model)
    counts = PruningState(model, example, paths).counts(names)
    return PruneResult(model, counts, space.predict_ms(counts), rounds, history, scores)
