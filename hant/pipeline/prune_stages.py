"""``hant prune`` as a variant of the pipeline: the same run directory, runner, records and report.

Stages: ``teacher`` and ``slots`` (shared with ``hant run``), ``prune-profile`` (the channel groups
and the width lookup table on the target, ``prune_latency.json``), ``prune`` (HALP or SP-LAMP to the
budget, fitted on measured latency: ``pruned/``), ``finetune`` (KD fine-tuning of the pruned network,
the better of pruned and fine-tuned on validation kept: ``student/``) and ``report`` (teacher and
student measured end to end beside each other: ``report.json``, ``report.md``, the plot).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..distill.trainer import evaluate, train_classifier, train_device
from ..distributed import is_main
from ..errors import HantError
from ..io import read_json, write_json
from ..latency import device_fingerprint, fingerprint_id, measure
from ..latency.fit import chosen_round
from ..pruning.run import build_space, prune_to_budget
from ..pruning.save import load_pruned, save_pruned
from ..pruning.space import PruneSpace, removed_importance
from ..student import load_student
from . import outputs
from .calibration_data import calibration_images, needs_calibration
from .context import Context
from .report import write_report
from .runner import STAGES, Stage
from .stages import held_out_accuracy

__all__ = ["PRUNE_STAGES"]


def _calibration(ctx: Context) -> np.ndarray | None:
    """On an int8 target, the task's training images every timed network is quantized on, as the
    profile stage of ``hant run`` quantizes its own: the first batch of them (a timed network
    calibrates on one batch); None on a floating-point target."""
    target = ctx.recipe.target
    return calibration_images(ctx, samples=target.batch_size) if needs_calibration([target.dtype]) else None


def _space(ctx: Context) -> PruneSpace:
    table = read_json(ctx.run.prune_latency)
    return build_space(ctx.recipe, ctx.teacher, ctx.slots, ctx.input_shape, table["latency_ms"], table["teacher_ms"])


def stage_prune_profile(ctx: Context) -> dict:
    """Trace the teacher's coupled channel groups and measure every width the program may pick."""
    space = build_space(ctx.recipe, ctx.teacher, ctx.slots, ctx.input_shape, calibration=_calibration(ctx))
    write_json(ctx.run.prune_latency, {
        "teacher_ms": space.teacher_ms,
        "predicted_teacher_ms": space.predicted_teacher_ms,
        "latency_ms": space.latency,
        "groups": {g: space.graph.groups[g].width for g in space.full_counts()},
        "frozen": space.graph.frozen(),
    })
    return {"entries": len(space.latency), "groups": len(space.full_counts()), "frozen_groups": len(space.graph.frozen()),
            "teacher_ms": space.teacher_ms, "predicted_teacher_ms": space.predicted_teacher_ms}


def _budget_fraction(ctx: Context, space: PruneSpace) -> float:
    cfg = ctx.recipe.search
    return cfg.budget_ms / space.teacher_ms if cfg.budget_ms is not None else cfg.budget


def stage_prune(ctx: Context) -> dict:
    """Prune the teacher to the budget by ``prune.method`` (HALP trains on the training device)."""
    space = _space(ctx)
    fraction = _budget_fraction(ctx, space)
    torch.manual_seed(ctx.seed)
    result = prune_to_budget(ctx.recipe, ctx.teacher, space, fraction, ctx.input_shape,
                             ctx.train_loader(seed_offset=3), ctx.augment(), device=train_device(),
                             calibration=_calibration(ctx))
    last = chosen_round(result.fit_rounds)
    record = {
        "method": ctx.recipe.prune.method,
        "budget_fraction": fraction,
        "budget_ms": fraction * space.predicted_teacher_ms,
        "counts": result.counts,
        "full_counts": space.full_counts(),
        "predicted_ms": result.predicted_ms,
        "fit_rounds": result.fit_rounds,
        "steps": result.history,
        "slots": {s.name: {g: result.counts[g] for g in (*space.slot_streams(s), *space.inner(s))} for s in ctx.slots},
        "slot_ms": {s.name: space.slot_ms(s, {g: result.counts[g] for g in (*space.slot_streams(s), *space.inner(s))})
                    for s in ctx.slots},
        "slot_scores": {s.name: sum(removed_importance(result.scores[g], result.counts[g]) for g in space.inner(s))
                        for s in ctx.slots},
        "teacher_slot_ms": {s.name: space.slot_ms(s, {g: space.full_counts()[g] for g in (*space.slot_streams(s), *space.inner(s))})
                            for s in ctx.slots},
    }
    save_pruned(result.model, ctx.run.pruned_dir, ctx.model_desc, [s.path for s in ctx.slots], result.counts,
                ctx.input_shape, plugins=ctx.recipe.zoo.plugins)
    write_json(ctx.run.prune_result, record)
    return {"method": record["method"], "predicted_ms": result.predicted_ms, "measured_ms": last["student_ms"],
            "measured_limit_ms": last["limit_ms"], "within_budget": last["student_ms"] <= last["limit_ms"]}


def stage_prune_finetune(ctx: Context) -> dict:
    """Fine-tune the pruned network end to end with KD; keep the better of pruned and fine-tuned on validation."""
    cfg = ctx.recipe.finetune
    record = read_json(ctx.run.prune_result)
    model = load_pruned(ctx.run.pruned_dir, allow_plugins=ctx.allow_plugins).requires_grad_(True)
    pruned_acc = evaluate(model, ctx.eval_loader("val"))
    pruned_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.manual_seed(ctx.seed)
    result = train_classifier(model, ctx.train_loader(seed_offset=2), ctx.eval_loader("val"), cfg, teacher=ctx.teacher,
                              kd_temperature=cfg.kd_temperature, kd_alpha=cfg.kd_alpha, augment=ctx.augment(),
                              desc="finetune", checkpoint=ctx.run.student_dir / "train_state.pt", seed=ctx.seed + 2)
    kept, val_acc = "fine-tuned", result.best_val_accuracy
    if pruned_acc > result.best_val_accuracy:
        kept, val_acc = "pruned", pruned_acc
        model.load_state_dict(pruned_state)
    model = model.cpu().eval()
    summary = {"pruned_val_accuracy": pruned_acc, **held_out_accuracy(ctx, model, val_acc), "kept": kept}
    if is_main():
        save_pruned(model, ctx.run.student_dir, ctx.model_desc, [s.path for s in ctx.slots], record["counts"],
                    ctx.input_shape, {"recipe": ctx.recipe.name, "method": record["method"]}, plugins=ctx.recipe.zoo.plugins)
        write_json(ctx.run.student_metrics, {**summary, "best_epoch": result.best_epoch, "history": result.history})
    return summary


def _slot_key(counts: dict[str, int], full: dict[str, int]) -> str:
    if all(counts[g] == full[g] for g in counts):
        return "keep"
    return "pruned[" + ",".join(f"{g}={n}" for g, n in counts.items()) + "]"


def stage_prune_report(ctx: Context) -> dict:
    """Measure teacher and saved student end to end (interleaved) and write the run's report files."""
    started = time.perf_counter()
    record = read_json(ctx.run.prune_result)
    student = load_student(ctx.run.student_dir, allow_plugins=ctx.allow_plugins)
    teacher, target = ctx.teacher, ctx.recipe.target
    timing = {"rel_precision": min(0.01, ctx.recipe.profile.rel_precision), "time_budget_s": ctx.recipe.profile.time_budget_s}
    images = _calibration(ctx)
    measured = measure([("teacher", teacher, ctx.input_shape), ("student", student, ctx.input_shape)], target,
                       calibration=None if images is None else {"teacher": images, "student": images}, **timing)
    test = ctx.eval_loader("test")
    teacher_acc, student_acc = evaluate(teacher, test), evaluate(student, test)
    split = ctx.test_split
    if not math.isclose(student_acc, read_json(ctx.run.student_metrics)[f"{split}_accuracy"], abs_tol=1e-6):
        raise HantError("the reloaded pruned student's accuracy differs from the fine-tuned one; the saved student is broken")
    teacher_ms, student_ms = measured["teacher"].median_ms, measured["student"].median_ms
    limit = record["budget_fraction"] * teacher_ms
    full = record["full_counts"]
    selection = {s: _slot_key(c, full) for s, c in record["slots"].items()}
    report = {
        "recipe": ctx.recipe.name,
        "target": target.to_dict(),
        "accuracy_split": split,
        "teacher": {"model": ctx.model_desc["name"], "accuracy": teacher_acc, "torch_float32_accuracy": teacher_acc,
                    "latency_ms": teacher_ms, "latency_iqr_ms": [measured["teacher"].q1_ms, measured["teacher"].q3_ms]},
        "student": {"accuracy": student_acc, "torch_float32_accuracy": student_acc, "precision": target.dtype,
                    "latency_ms": student_ms, "latency_iqr_ms": [measured["student"].q1_ms, measured["student"].q3_ms],
                    "predicted_latency_ms": record["predicted_ms"], "speedup": teacher_ms / student_ms,
                    "changed_slots": sum(1 for k in selection.values() if k != "keep")},
        "budget_ms": limit,
        "budget_fraction": record["budget_fraction"],
        "within_budget": student_ms <= limit,
        "search": {"backend": f"prune:{record['method']}", "status": "fitted on measured latency", "solve_seconds": 0.0,
                   "gap": 0.0, "budget_ms": record["budget_ms"], "verify_rounds": record["fit_rounds"],
                   "total_score": None},
        "prune": {"method": record["method"], "counts": record["counts"], "full_counts": full, "steps": record["steps"]},
        "selection": selection,
        "slots": [{"slot": s, "candidate": selection[s], "precision": target.dtype, "latency_ms": record["slot_ms"][s],
                   "teacher_latency_ms": record["teacher_slot_ms"][s], "score": record["slot_scores"][s]}
                  for s in selection],
        "stage_seconds": {**ctx.run.stage_seconds(), "report": time.perf_counter() - started},
    }
    write_report(ctx.run, report)
    return {"student_accuracy": student_acc, "student_latency_ms": student_ms, "within_budget": report["within_budget"]}


PRUNE_STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        STAGES["teacher"],
        STAGES["slots"],
        Stage(
            "prune-profile",
            ("slots",),
            lambda c: [c.recipe.seed, c.recipe.prune.fractions, c.recipe.prune.divisor, c.recipe.target, c.recipe.profile,
                       fingerprint_id(device_fingerprint(c.recipe.target))],
            lambda r: [r.prune_latency],
            stage_prune_profile,
            outputs.check_prune_profile,
        ),
        Stage(
            "prune",
            ("teacher", "prune-profile"),
            lambda c: [c.seed, c.recipe.data, c.recipe.prune, c.recipe.search.budget, c.recipe.search.budget_ms,
                       c.recipe.search.margin, c.recipe.search.verify_rounds, c.recipe.finetune],
            lambda r: [r.prune_result, r.pruned_dir / "weights.safetensors"],
            stage_prune,
            outputs.check_prune,
        ),
        Stage(
            "finetune",
            ("prune",),
            lambda c: [c.seed, c.recipe.data, c.recipe.finetune],
            lambda r: [r.student_dir / "arch.json", r.student_dir / "weights.safetensors", r.student_metrics],
            stage_prune_finetune,
            outputs.check_finetune,
        ),
        Stage("report", ("prune", "finetune"), lambda c: [c.recipe.target], lambda r: [r.report_json, r.report_md],
              stage_prune_report, outputs.check_report),
    ]
}
"""The ``hant prune`` pipeline, for :func:`hant.pipeline.runner.run_stages`."""
