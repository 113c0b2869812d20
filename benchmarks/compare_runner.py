"""The methods of compare_methods.py: each makes one student per (budget, seed) from the shared teacher.

- ``hant``: the full pipeline over the recipe's zoo (:func:`hant.pipeline.budget_series.run_budget_series`);
- ``halp`` and ``splamp``: ``hant prune`` (:func:`hant.pipeline.prune_series.run_prune_series`);
- ``tp_magnitude`` and ``tp_taylor``: Torch-Pruning at the uniform ratio that bisection on measured
  latency finds (:mod:`tp_baseline`, :mod:`latency_bisect`);
- ``fastnas``: ModelOpt FastNAS at the FLOPs fraction that the same bisection finds (:mod:`modelopt_baseline`).

Every student is then fine-tuned by the recipe's ``finetune`` schedule with KD from the teacher (the
pipelines' finetune stages for the first three, :func:`finetune` for the others, which follows the
same rule: the better of pruned and fine-tuned on validation is kept). The seed varies distillation,
pruning and fine-tuning; the teacher, data splits and latency table are shared.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from latency_bisect import KNOB_RANGE, bisect_knob
from modelopt_baseline import fastnas_prune, min_flops_fraction
from tp_baseline import tp_prune

from hant.config import Recipe
from hant.deploy import PrecisionPlan
from hant.deploy.module import deployed_module
from hant.distill.trainer import evaluate, train_classifier
from hant.pipeline.budget_series import run_budget_series, share_upstream
from hant.pipeline.context import Context
from hant.pipeline.prune_series import run_prune_series
from hant.pipeline.rundir import RunDir
from hant.student import load_student, student_deployment

PIPELINE_PRUNERS = ("halp", "splamp")
TP_IMPORTANCES = ("magnitude", "taylor")
TAYLOR_BATCHES = 4
"""Training batches whose gradients give Torch-Pruning's Taylor importance."""
FASTNAS_SCORE_IMAGES = 256
"""Validation images FastNAS scores its sub-networks on (its sensitivity analysis evaluates many)."""
FASTNAS_BN_BATCHES = 4
"""Training batches FastNAS recalibrates BatchNorm statistics on before scoring a sub-network."""
FASTNAS_FLOOR_SHARE = 0.99
"""Share of the way to FastNAS's smallest sub-network the bisection may go (its FLOPs bound must stay
above that sub-network's, which it cannot go below)."""


@dataclass
class Student:
    """One method's student at one budget and seed, with what its method predicted of its latency."""

    method: str
    budget: float
    seed: int
    model: nn.Module
    plan: PrecisionPlan
    predicted_ms: float | None
    notes: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method}@{self.budget:g}#{self.seed}"


def seed_root(work: Path, method: str, seed: int) -> Path:
    return work / method / f"seed-{seed}"


def hant_students(recipe: Recipe, work: Path, budgets: list[float], seeds: list[int],
                  unreachable: dict[str, str]) -> list[Student]:
    """Full HANT at every budget and seed: the first seed's run trains the teacher and profiles the
    zoo; the others link those and distill, search and fine-tune with their own seed. A budget the
    zoo cannot reach goes into ``unreachable`` (``hant@<budget>#<seed>`` → why) instead."""
    out = []
    first = RunDir(seed_root(work, "hant", seeds[0]))
    for seed in seeds:
        root = seed_root(work, "hant", seed)
        if seed != seeds[0]:
            share_upstream(first, RunDir(root), ("teacher", "slots", "zoo", "profile"),
                           (first.teacher_dir, first.slots, first.zoo, first.latency))
        for row in run_budget_series(recipe, root, budgets, seed=seed):
            if "infeasible" in row:
                unreachable[f"hant@{row['budget']:g}#{seed}"] = row["infeasible"]
                continue
            student_dir = Path(row["run_dir"]) / "student"
            _, plan = student_deployment(student_dir)
            out.append(Student("hant", row["budget"], seed, load_student(student_dir), plan, row["predicted_latency_ms"],
                               {"run_dir": row["run_dir"], "report_within_budget": row["within_budget"]}))
    return out


def pruner_students(recipe: Recipe, work: Path, methods: list[str], budgets: list[float], seeds: list[int],
                    teacher_run: RunDir) -> list[Student]:
    """HALP and SP-LAMP as ``hant prune`` runs them, at every budget and seed, on the shared teacher
    (below the narrowest network, that network: over budget, and listed so)."""
    plan = PrecisionPlan(recipe.target.dtype)
    out = []
    for seed in seeds:
        rows = run_prune_series(recipe, seed_root(work, "prune", seed), methods, budgets, teacher_run=teacher_run, seed=seed)
        for row in rows:
            p = row["prune"]
            out.append(Student(row["method"], row["budget"], seed, load_student(Path(row["run_dir"]) / "student"), plan,
                               row["predicted_latency_ms"],
                               {"run_dir": row["run_dir"], "predicted_on": recipe.target.describe(), "fit_rounds": p["fit_rounds"],
                                "report_within_budget": row["within_budget"]}))
    return out


def finetune(model: nn.Module, ctx: Context, seed: int) -> nn.Module:
    """The pipelines' fine-tuning for a student made outside them: the recipe's ``finetune`` schedule
    with KD from the teacher, batches and augmentation drawn from ``seed``; the better of the pruned
    and the fine-tuned network on validation is kept, as the pipelines' finetune stages do."""
    cfg = ctx.recipe.finetune
    model.requires_grad_(True)
    before = evaluate(model, ctx.eval_loader("val"))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.manual_seed(seed)
    result = train_classifier(
        model, ctx.train_loader(seed_offset=2, base_seed=seed), ctx.eval_loader("val"), cfg, teacher=ctx.teacher,
        kd_temperature=cfg.kd_temperature, kd_alpha=cfg.kd_alpha, augment=ctx.augment(), desc="finetune", seed=seed + 2,
    )
    if before > result.best_val_accuracy:
        model.load_state_dict(state)
    return model.cpu().eval()


def _bisect(ctx: Context, build, budget: float, iterations: int, images: np.ndarray | None, time_budget_s: float,
            knob_range: tuple[float, float] = KNOB_RANGE):
    r = ctx.recipe
    return bisect_knob(build, ctx.teacher, ctx.input_shape, r.target, budget, r.search.margin, iterations,
                       calibration=images, knob_range=knob_range, rel_precision=r.profile.rel_precision,
                       time_budget_s=time_budget_s)


def tp_students(ctx: Context, budgets: list[float], seeds: list[int], images: np.ndarray | None, iterations: int,
                time_budget_s: float) -> list[Student]:
    """Torch-Pruning magnitude and Taylor at the ratio bisected per budget (shared by seeds and both
    importances: it fixes the architecture); Taylor's gradients come from the seed's batches."""
    teacher, example = ctx.teacher, ctx.example_input
    plan = PrecisionPlan(ctx.recipe.target.dtype)
    out = []
    for budget in budgets:
        ratio, ratio_ms, trials = _bisect(ctx, lambda x: tp_prune(teacher, example, x, "magnitude"), budget,
                                          iterations, images, time_budget_s)
        for seed in seeds:
            loader = ctx.train_loader(seed_offset=4, base_seed=seed)
            batches = [b for _, b in zip(range(TAYLOR_BATCHES), loader)]
            for imp in TP_IMPORTANCES:
                net = finetune(tp_prune(teacher, example, ratio, imp, batches), ctx, seed)
                out.append(Student(f"tp_{imp}", budget, seed, net, plan, ratio_ms, {"ratio": ratio, "bisection": trials}))
    return out


def fastnas_students(ctx: Context, work: Path, budgets: list[float], seeds: list[int], images: np.ndarray | None,
                     iterations: int, time_budget_s: float) -> list[Student]:
    """ModelOpt FastNAS at the FLOPs fraction bisected per budget; its sensitivity analysis (on a
    validation subset) runs once and is reused from its checkpoint, and its sub-network is the same
    for every seed, which varies fine-tuning only."""
    teacher, example = ctx.teacher, ctx.example_input
    val = ctx.splits.val if ctx.user_data is None else None
    score_loader = ctx.eval_loader("val") if val is None else DataLoader(
        Subset(val, range(min(FASTNAS_SCORE_IMAGES, len(val)))), batch_size=ctx.recipe.data.batch_size)
    bn_batches = [b for _, b in zip(range(FASTNAS_BN_BATCHES), ctx.calibration_loader(ctx.recipe.data.batch_size))]
    checkpoint = work / "fastnas" / "search.pth"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)

    def build(knob: float) -> nn.Module:
        return fastnas_prune(teacher, example, 1.0 - knob, bn_batches, lambda m: evaluate(m, score_loader), checkpoint)

    # the knob is 1 - the FLOPs fraction; FastNAS cannot go below its smallest sub-network's FLOPs
    floor = min_flops_fraction(teacher, example)
    knob_range = (KNOB_RANGE[0], min(KNOB_RANGE[1], (1.0 - floor) * FASTNAS_FLOOR_SHARE))
    plan = PrecisionPlan(ctx.recipe.target.dtype)
    out = []
    for budget in budgets:
        knob, ms, trials = _bisect(ctx, build, budget, iterations, images, time_budget_s, knob_range)
        pruned = build(knob)
        for seed in seeds:
            net = finetune(copy.deepcopy(pruned), ctx, seed)
            out.append(Student("fastnas", budget, seed, net, plan, ms,
                               {"flops_fraction": 1.0 - knob, "min_flops_fraction": floor, "bisection": trials}))
    return out


@torch.no_grad()
def correct_vector(model: nn.Module, ctx: Context, plan: PrecisionPlan, images: np.ndarray | None, name: str) -> np.ndarray:
    """Per test image, whether ``model`` as the target's runtime computes it under ``plan`` (quantized
    on ``images`` where the plan has int8) classifies it correctly."""
    with tempfile.TemporaryDirectory(prefix="hant-compare-") as tmp:
        deployed = deployed_module(model.eval(), ctx.input_shape, ctx.recipe.target, plan, Path(tmp), name, images)
        hits = [(deployed(x).argmax(1) == y).numpy() for x, y in ctx.eval_loader("test")]
    return np.concatenate(hits)
