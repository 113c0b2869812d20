"""The stage functions: each reads upstream files of the run directory and writes its own.

Each returns a small summary dict that the runner stores in the stage's record.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..deploy import PrecisionPlan, deployed_module, split_precision, with_precision
from ..distill.layerwise import Numerics, build_trained_candidate, distill_device, distill_zoo
from ..distill.stream_scores import compensated
from ..distill.trainer import evaluate, train_classifier
from ..distributed import is_main
from ..errors import HantError
from ..io import hash_obj, read_json, save_tensors, write_json
from ..latency import LatencyCache, LatencyTable, LatencyTarget, device_fingerprint, measure, profile_network
from ..latency.target import BACKEND_DTYPES
from ..latency.fit import fit_measured
from ..models import create_model
from ..ops_zoo import CandidateSpec, build_zoo, zoo_to_json
from ..progress import ProgressCounter
from ..search import CandidateCost, Problem, Selection, SlotChoices, solve
from ..slots import Slot, discover_slots, get_submodule, slots_to_json
from ..student import assemble_student, load_student, save_student
from ..user_data import check_split
from ..weights import load_weights
from .calibration_data import calibration_images, needs_calibration, run_precisions, task_calibration
from .context import Context
from .profiling import slot_options
from .streams import (
    admissible_zoo, profile_streams, reordered_teacher, stream_counts, stream_problem, stream_records,
    uses_stream_widths, width_scores,
)
from .report import write_report

log = logging.getLogger(__name__)

TEACHER_UID = "network:teacher"


def stage_teacher(ctx: Context) -> dict:
    """Train the teacher (or load its checkpoint / pretrained weights) and record its accuracy; a
    checkpoint whose classifier was reset for the data's classes is fine-tuned with ``teacher.train``."""
    cfg = ctx.recipe.teacher
    d = ctx.model_desc
    torch.manual_seed(ctx.recipe.seed)
    given = ctx.given_teacher
    if given is not None:
        model = copy.deepcopy(given)
    else:
        model = create_model(d["name"], d["num_classes"], d["in_chans"], d["kwargs"], pretrained=cfg.pretrained)
    reset_from = load_weights(model, cfg.checkpoint, cfg.checkpoint_format) if cfg.checkpoint else None
    if reset_from is not None or not (cfg.checkpoint or given is not None or cfg.pretrained):
        train_classifier(
            model,
            ctx.train_loader(base_seed=ctx.recipe.seed),
            ctx.eval_loader("val"),
            cfg.train,
            augment=ctx.augment(),
            desc="teacher",
            checkpoint=ctx.run.teacher_dir / "train_state.pt",
            seed=ctx.recipe.seed,
        )
        source = "trained by this recipe" if reset_from is None else (
            f"checkpoint {cfg.checkpoint} with its {reset_from}-class classifier reset to {d['num_classes']} classes, "
            "fine-tuned by this recipe"
        )
    elif cfg.checkpoint:
        source = f"checkpoint {cfg.checkpoint}"
    elif given is not None:
        source = f"the module given or built by {cfg.factory}"
    else:
        source = "timm pretrained weights"
    if uses_stream_widths(ctx.recipe):  # the same function; a stream's first channels are then its best
        model = reordered_teacher(model, ctx.example_input, ctx.recipe.slots.patterns)
    accuracy = held_out_accuracy(ctx, model, evaluate(model, ctx.eval_loader("val")))
    if is_main():
        save_tensors(ctx.run.teacher_weights, model.state_dict())
        write_json(ctx.run.teacher_meta, {"model": d, "source": source, **accuracy})
    return {**accuracy, "source": source}


def held_out_accuracy(ctx: Context, model: torch.nn.Module, val_accuracy: float) -> dict:
    """``val_accuracy``, and ``test_accuracy`` where the data has a test split no stage selects on (an
    ImageFolder without ``test/`` or user data without one has none: its accuracies are val ones and
    are called so)."""
    if ctx.test_split == "val":
        return {"val_accuracy": val_accuracy}
    return {"val_accuracy": val_accuracy, "test_accuracy": evaluate(model, ctx.eval_loader("test"))}


def stage_slots(ctx: Context) -> dict:
    """Find the teacher's replaceable blocks and their shapes."""
    slots = discover_slots(ctx.teacher, ctx.example_input, ctx.recipe.slots.patterns or None)
    write_json(ctx.run.slots, slots_to_json(slots))
    return {"slots": len(slots)}


def stage_zoo(ctx: Context) -> dict:
    """List every slot's candidates."""
    zoo = build_zoo(ctx.teacher, ctx.slots, ctx.recipe.zoo.families)
    if uses_stream_widths(ctx.recipe):
        zoo = admissible_zoo(zoo, ctx.slots, ctx.stream_layout)
    write_json(ctx.run.zoo, zoo_to_json(zoo))
    return {"candidates": sum(len(v) for v in zoo.values())}


def stage_profile(ctx: Context) -> dict:
    """Measure every candidate on the target (cache first), the part of the teacher outside the
    slots, the teacher and a few random students, and calibrate the whole-network prediction."""
    target, cfg = ctx.recipe.target, ctx.recipe.profile
    precisions = run_precisions(ctx)
    images, slot_inputs = task_calibration(ctx) if needs_calibration(precisions) else (None, None)
    bar = ProgressCounter("profile", unit="entry")
    try:
        table, hits = profile_network(
            ctx.teacher,
            ctx.input_shape,
            slot_options(ctx.teacher, ctx.slots, ctx.zoo),
            target,
            LatencyCache(),
            base_uid=f"{TEACHER_UID}:{hash_obj(ctx.model_desc)}",
            calibration_networks=cfg.calibration_networks,
            calibration_time_s=cfg.calibration_time_s,
            seed=ctx.recipe.seed,
            on_progress=bar,
            rel_precision=cfg.rel_precision,
            time_budget_s=cfg.time_budget_s,
            precisions=precisions[1:],
            calibration=images,
            slot_calibration=slot_inputs,
        )
    finally:
        bar.close()
    if uses_stream_widths(ctx.recipe):
        hits += profile_streams(ctx.teacher, ctx.input_shape, ctx.slots, ctx.stream_layout, ctx.zoo, table, target,
                                images, slot_inputs, rel_precision=cfg.rel_precision, time_budget_s=cfg.time_budget_s)
    table.to_json(ctx.run.latency)
    cal = table.extra["calibration"]
    return {
        "entries": len(table.entries),
        "cache_hits": hits,
        "teacher_ms": table.extra["teacher_ms"],
        "fixed_ms": table.extra["fixed_ms"],
        "block_scale": table.extra["block_scale"],
        "calibration_loo_max_abs_err_pct": cal["loo_max_abs_err_pct"],
    }


def stage_distill(ctx: Context) -> dict:
    """Phase 1: distill every candidate from the teacher's slot inputs and outputs; score them.

    Under torchrun every rank trains its share of the candidates and rank 0 writes scores.json.
    Random shifts draw from torch's global RNG, which phase 1 seeds per batch, so a resumed or
    sharded run sees the same augmented batches.
    """
    with tempfile.TemporaryDirectory(prefix="hant-deployed-") as workdir:
        records = distill_zoo(
            ctx.teacher,
            ctx.slots,
            ctx.zoo,
            ctx.train_loader(seed_offset=1),
            ctx.eval_loader("val"),
            ctx.recipe.distill,
            ctx.run.candidate_weights,
            seed=ctx.seed,
            augment=ctx.augment(),
            numerics=deployed_numerics(ctx, workdir),
        )
    if uses_stream_widths(ctx.recipe):
        accuracy = next(r.swap_accuracy for recs in records.values() for r in recs.values() if r.status == "exact")
        fit = ctx.calibration_loader(ctx.recipe.data.batch_size)
        records.update(stream_records(ctx.teacher, ctx.stream_layout, ctx.slots, ctx.zoo, fit, ctx.eval_loader("val"),
                                      ctx.recipe.distill, accuracy))
    if is_main():
        write_json(ctx.run.scores, {s: {k: dataclasses.asdict(r) for k, r in recs.items()} for s, recs in records.items()})
    failed = [f"{r.slot}:{r.key}" for recs in records.values() for r in recs.values() if r.status == "failed"]
    return {"candidates": sum(len(v) for v in records.values()), "failed": failed}


def deployed_numerics(ctx: Context, workdir: str) -> dict[str, Numerics]:
    """Per precision of the run other than float32, how a trained candidate is computed once deployed:
    exported, quantized by the target runtime on the teacher's real slot inputs (int8), compiled; scores
    of those candidates are then losses on the deployed block's real output. The distill stage keys
    their records ``key@precision``; plain keys are torch's float32 numerics."""
    target = ctx.recipe.target
    precisions = run_precisions(ctx)
    _, slot_inputs = task_calibration(ctx) if needs_calibration(precisions) else (None, {})
    counter = iter(range(1 << 30))

    def make(precision: str) -> Numerics:
        def numerics(slot: Slot, module: torch.nn.Module) -> torch.nn.Module:
            return deployed_module(module, tuple(slot.in_shape), target, PrecisionPlan(precision), Path(workdir),
                                   f"{slot.name}-{next(counter)}", slot_inputs.get(slot.path))
        return numerics

    return {p: make(p) for p in precisions if p != "float32"}


def latency_table(ctx: Context) -> LatencyTable:
    """The run's latency table, checked against the recipe's target and this machine."""
    table = LatencyTable.from_json(ctx.run.latency)
    table.check_compatible(ctx.recipe.target, device_fingerprint(ctx.recipe.target))
    return table


def selection_problem(ctx: Context, table: LatencyTable, budget_ms: float,
                      score_of: Callable[[Mapping[str, Any]], float | None] | None = None) -> Problem:
    """One candidate per (operation, precision) pair. Scores are keyed against float32 (the distill
    stage's plain records are torch's float32 numerics), latencies and the selection's keys against the
    target's dtype, so a student wholly in the target's precision has the plain keys. ``score_of``
    maps a candidate's score record to what the program minimises (default: its ``score``, the one
    ``distill.score`` names); a candidate it gives None is left out. With ``stream_cut`` in the zoo the
    program also chooses every stream's width (:func:`~hant.pipeline.streams.stream_problem`). With
    ``search.teacher_floor`` no score is below the teacher's block's (its float32 ``keep`` record)."""
    score_of = score_of or (lambda rec: rec["score"])
    scores = read_json(ctx.run.scores)
    default = ctx.recipe.target.dtype
    floored = ctx.recipe.search.teacher_floor
    slots, offered = [], {}
    for slot in ctx.slots:
        costs, specs = [], []
        floor = record_score(scores[slot.name].get("keep"), score_of) if floored else None
        for spec in ctx.zoo[slot.name]:
            for precision in run_precisions(ctx):
                score = record_score(scores[slot.name].get(with_precision(spec.key, precision, "float32")), score_of)
                if score is None:
                    continue
                if floor is not None:
                    score = max(score, floor)
                latency = table.slot_option_ms(slot.path, with_precision(spec.uid, precision, default), precision)
                costs.append(CandidateCost(with_precision(spec.key, precision, default), latency, score))
                specs.append(spec)
        slots.append(SlotChoices(slot.name, tuple(costs)))
        offered[slot.name] = specs
    problem = Problem(tuple(slots), budget_ms, table.extra["fixed_ms"])
    if uses_stream_widths(ctx.recipe):
        return stream_problem(problem, offered, ctx.slots, ctx.stream_layout, table,
                              width_scores(scores, ctx.stream_layout, score_of, floored))
    return problem


def record_score(rec: Mapping[str, Any] | None, score_of: Callable[[Mapping[str, Any]], float | None]) -> float | None:
    """``score_of`` of a candidate's score record; None where it is absent or failed."""
    return None if rec is None or rec["status"] == "failed" else score_of(rec)


def network_calibration(ctx: Context, names: list[str]) -> dict | None:
    """Training images as the int8 calibration data of whole networks measured under ``names``
    (None when no precision of the run is int8)."""
    if not needs_calibration(run_precisions(ctx)):
        return None
    images = calibration_images(ctx)
    return {name: images for name in names}


def student_plan(ctx: Context, choices: dict[str, str]) -> PrecisionPlan:
    """The precision plan of the student a selection describes (slot paths -> their chosen precision)."""
    default = ctx.recipe.target.dtype
    return PrecisionPlan.of(default, {s.path: split_precision(choices[s.name], default)[1] for s in ctx.slots})


def trained_candidates(ctx: Context, choices: dict[str, CandidateSpec]) -> dict[str, torch.nn.Module]:
    """Slot name -> the chosen candidate with its phase-1 (distilled) weights, for every slot whose
    choice is not ``keep``; what :func:`~hant.student.assemble_student` takes as trained modules."""
    teacher = ctx.teacher
    return {
        s.name: build_trained_candidate(s.name, choices[s.name], get_submodule(teacher, s.path), ctx.run.candidate_weights)
        for s in ctx.slots
        if choices[s.name].family != "keep"
    }


def chosen_specs(ctx: Context, choices: dict[str, str]) -> dict[str, CandidateSpec]:
    """The operation of each chosen candidate (its precision aside: :func:`student_plan`); the
    program's stream and outside slots, which are not slots of the network, aside."""
    by_key = {s: {spec.key: spec for spec in specs} for s, specs in ctx.zoo.items()}
    default = ctx.recipe.target.dtype
    return {slot: by_key[slot][split_precision(key, default)[0]] for slot, key in choices.items() if slot in by_key}


def changed_blocks(ctx: Context, choices: Mapping[str, str]) -> int:
    """Slots of the network whose block the selection replaces (the program's stream and outside
    slots, which :data:`~hant.search.CHANGED` also counts, aside)."""
    return sum(1 for s in ctx.slots if choices.get(s.name, "keep") != "keep")


def selected_streams(ctx: Context, choices: dict[str, str]) -> dict[str, int] | None:
    """Stream -> kept channels of a selection (None in a run without stream widths)."""
    return stream_counts(choices, ctx.stream_layout) if uses_stream_widths(ctx.recipe) else None


def build_student(ctx: Context, choices: dict[str, str]) -> torch.nn.Module:
    """The student a selection describes, with the chosen candidates' phase-1 weights; on cut streams, the
    layers outside the slots that read them compensate for the dropped channels (as the streams were scored)."""
    specs = chosen_specs(ctx, choices)
    streams = selected_streams(ctx, choices)
    teacher = ctx.teacher
    if streams:
        teacher = compensated(teacher, ctx.stream_layout, ctx.slots, streams,
                              ctx.calibration_loader(ctx.recipe.data.batch_size), distill_device(ctx.recipe.distill.device))
    return assemble_student(teacher, ctx.slots, specs, trained_candidates(ctx, specs), streams, ctx.input_shape)


def reference_teacher_ms(table: LatencyTable) -> float:
    """The teacher's latency that relative budgets are fractions of: the table's own prediction
    of the whole teacher, so that budget 1.0 always admits the teacher and the prediction's
    remaining bias cancels in the ratio (the measured teacher where a table has no prediction)."""
    return float(table.extra.get("teacher_predicted_ms", table.extra["teacher_ms"]))


def budget_ms(ctx: Context, table: LatencyTable) -> float:
    """The latency budget in milliseconds: absolute, or a fraction of the teacher's latency."""
    cfg = ctx.recipe.search
    return cfg.budget_ms if cfg.budget_ms is not None else cfg.budget * reference_teacher_ms(table)


def measured_limit_ms(ctx: Context, budget: float, teacher_ms: float, table: LatencyTable) -> float:
    """The budget against which a student measured beside the teacher is judged.

    A relative budget is a fraction of the teacher measured in the same interleaved run, since
    absolute milliseconds drift on a shared machine while ratios measured together hold.
    """
    if ctx.recipe.search.budget_ms is not None:
        return budget
    return budget / reference_teacher_ms(table) * teacher_ms


def judge_budget(ctx: Context, budget: float, student_ms: float, teacher_ms: float, table: LatencyTable) -> tuple[float, bool]:
    """The measured limit and whether a student measured beside the teacher is within it: the one
    definition of "within budget" that the search summary and the report both use."""
    limit = measured_limit_ms(ctx, budget, teacher_ms, table)
    return limit, student_ms <= limit


def stage_search(ctx: Context) -> dict:
    """Phase 2: the integer program, then the assembled student measured end to end beside the
    teacher; while it is over budget (less a noise margin), the solver's budget is tightened by
    the measured excess and the program solved again."""
    cfg, target = ctx.recipe.search, ctx.recipe.target
    table = latency_table(ctx)
    budget = budget_ms(ctx, table)
    predicted: list[float] = []

    def build(solver_budget: float) -> tuple[Selection, torch.nn.Module]:
        selection = solve(selection_problem(ctx, table, solver_budget), backend=cfg.backend, time_limit_s=cfg.time_limit_s)
        predicted.append(selection.predicted_latency_ms)
        return selection, build_student(ctx, selection.choices)

    fit = fit_measured(
        build, ctx.teacher, ctx.input_shape, target, budget,
        lambda teacher_ms: measured_limit_ms(ctx, budget, teacher_ms, table) * (1 - cfg.margin),
        rounds=cfg.verify_rounds,
        plan=lambda sel: student_plan(ctx, sel.choices),
        calibration=network_calibration(ctx, ["teacher", "student"]),
        rel_precision=ctx.recipe.profile.rel_precision, time_budget_s=ctx.recipe.profile.time_budget_s,
    )
    selection = fit.result
    rounds = [
        {
            "solver_budget_ms": r["budget_ms"],
            "predicted_ms": p,
            "measured_student_ms": r["student_ms"],
            "measured_teacher_ms": r["teacher_ms"],
            "limit_ms": r["limit_ms"],
            "chosen": i == fit.chosen,
            **({"remeasured": r["remeasured"]} if "remeasured" in r else {}),
        }
        for i, (r, p) in enumerate(zip(fit.rounds, predicted))
    ]
    result = selection.to_dict()
    result["budget_ms"] = budget
    result["budget_fraction"] = budget / reference_teacher_ms(table)
    result["verify_rounds"] = rounds
    write_json(ctx.run.selection, result)
    last = rounds[fit.chosen]
    limit, within = judge_budget(ctx, budget, last["measured_student_ms"], last["measured_teacher_ms"], table)
    return {
        "status": selection.status,
        "predicted_ms": selection.predicted_latency_ms,
        "budget_ms": budget,
        "measured_ms": last["measured_student_ms"],
        "measured_limit_ms": limit,
        "within_budget": within,
        "changed_slots": changed_blocks(ctx, selection.choices),
    }


def finetune_student(ctx: Context, student: torch.nn.Module, checkpoint: Path | None = None) -> dict:
    """Phase 3's training of an assembled ``student`` (in place): end to end with the recipe's
    ``finetune`` settings and KD from the teacher, then the better of the assembled and the
    fine-tuned weights on validation is kept. ``checkpoint`` (saved every epoch) makes a killed run
    resume. Returns both validation accuracies, which was ``kept``, the kept student's held-out
    accuracy (:func:`held_out_accuracy`), its best epoch and the training history."""
    cfg = ctx.recipe.finetune
    if ctx.user_data is not None:
        check_split("train", ctx.train_loader(seed_offset=2), ctx.input_shape, labels=True)
    student.requires_grad_(True)
    assembled_acc = evaluate(student, ctx.eval_loader("val"))
    assembled_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    torch.manual_seed(ctx.seed)
    result = train_classifier(
        student,
        ctx.train_loader(seed_offset=2),
        ctx.eval_loader("val"),
        cfg,
        teacher=ctx.teacher,
        kd_temperature=cfg.kd_temperature,
        kd_alpha=cfg.kd_alpha,
        augment=ctx.augment(),
        desc="finetune",
        checkpoint=checkpoint,
        seed=ctx.seed + 2,
    )
    kept, val_acc = "fine-tuned", result.best_val_accuracy
    if assembled_acc > result.best_val_accuracy:
        kept, val_acc = "assembled", assembled_acc
        student.load_state_dict(assembled_state)
        log.warning(
            "fine-tuning lowered validation accuracy (%.2f %% -> %.2f %%); keeping the assembled student",
            assembled_acc, result.best_val_accuracy,
        )
    return {
        "assembled_val_accuracy": assembled_acc,
        "finetuned_val_accuracy": result.best_val_accuracy,
        "kept": kept,
        **held_out_accuracy(ctx, student, val_acc),
        "best_epoch": result.best_epoch,
        "history": result.history,
    }


def stage_finetune(ctx: Context) -> dict:
    """Phase 3: assemble the student from distilled weights and fine-tune it end to end with KD
    (:func:`finetune_student`); the better of the assembled and the fine-tuned student on
    validation is saved (``kept``)."""
    selection = read_json(ctx.run.selection)
    specs = chosen_specs(ctx, selection["choices"])
    student = build_student(ctx, selection["choices"])
    metrics = finetune_student(ctx, student, ctx.run.student_dir / "train_state.pt")
    summary = {k: metrics[k] for k in ("assembled_val_accuracy", "val_accuracy", "test_accuracy", "kept") if k in metrics}
    if not is_main():
        return summary
    save_student(
        student,
        ctx.run.student_dir,
        ctx.model_desc,
        ctx.slots,
        specs,
        plugins=ctx.recipe.zoo.plugins,
        streams=selected_streams(ctx, selection["choices"]),
        input_shape=ctx.input_shape,
        metadata={
            "recipe": ctx.recipe.name,
            "input_shape": list(ctx.input_shape),
            "deployment": {
                "target": ctx.recipe.target.to_dict(),
                "plan": student_plan(ctx, selection["choices"]).to_dict(),
            },
        },
    )
    write_json(ctx.run.student_metrics, metrics)
    return summary


def _slot_rows(ctx: Context, table: LatencyTable, choices: dict[str, str]) -> list[dict]:
    """Per slot: the chosen operation with its latency and score, beside the teacher block's latency."""
    scores = read_json(ctx.run.scores)
    default = ctx.recipe.target.dtype
    rows = []
    for slot in ctx.slots:
        spec = chosen_specs(ctx, {slot.name: choices[slot.name]})[slot.name]
        precision = split_precision(choices[slot.name], default)[1]
        rows.append(
            {
                "slot": slot.name,
                "candidate": spec.key,
                "precision": precision,
                "latency_ms": table.slot_option_ms(slot.path, with_precision(spec.uid, precision, default), precision),
                "teacher_latency_ms": table.latency_ms(ctx.zoo[slot.name][0].uid),
                "score": scores[slot.name][with_precision(spec.key, precision, "float32")]["score"],
            }
        )
    return rows


def int8_baseline(target: LatencyTarget) -> bool:
    """True when the teacher's own int8 post-training quantization is a baseline on ``target``: its
    runtime runs int8 and the target itself is in a floating precision."""
    kind = "cpu" if target.device == "cpu" else "cuda"
    return target.exports_onnx and target.dtype != "int8" and "int8" in BACKEND_DTYPES[target.backend].get(kind, ())


def deployed_accuracy(ctx: Context, model: torch.nn.Module, plan: PrecisionPlan, name: str, images) -> float:
    """Test accuracy of ``model`` as the target's runtime computes it under ``plan`` (torch's own
    result for a float32 torch target)."""
    target = ctx.recipe.target
    if not target.exports_onnx and plan == PrecisionPlan("float32"):
        return evaluate(model, ctx.eval_loader("test"))
    with tempfile.TemporaryDirectory(prefix="hant-report-") as tmp:
        deployed = deployed_module(model, ctx.input_shape, target, plan, Path(tmp), name, images)
        return evaluate(deployed, ctx.eval_loader("test"), device=torch.device("cpu"))


def stage_report(ctx: Context) -> dict:
    """Measure teacher and saved student end to end (interleaved) as the target runs them, with the
    teacher's int8 post-training quantization beside them where the runtime has int8, and the teacher
    in torch eager float32 for scale; evaluate each as deployed; write the report."""
    started = time.perf_counter()
    student = load_student(ctx.run.student_dir, allow_plugins=ctx.allow_plugins)
    teacher = ctx.teacher
    target = ctx.recipe.target
    selection = read_json(ctx.run.selection)
    plan = student_plan(ctx, selection["choices"])
    ptq = int8_baseline(target)
    images = calibration_images(ctx) if ptq or plan.uses_int8 else None
    items = [("teacher", teacher, ctx.input_shape), ("student", student, ctx.input_shape)]
    plans = {"student": plan}
    if ptq:
        items.append(("teacher_int8", teacher, ctx.input_shape))
        plans["teacher_int8"] = PrecisionPlan("int8")
    timing = {"rel_precision": min(0.01, ctx.recipe.profile.rel_precision), "time_budget_s": ctx.recipe.profile.time_budget_s}
    measured = measure(items, target, plans=plans,
                       calibration={n: images for n, _, _ in items} if images is not None else None, **timing)
    eager = LatencyTarget(batch_size=target.batch_size, threads=target.threads)
    if target == eager:
        eager_ms = measured["teacher"].median_ms
    else:
        eager_ms = measure([("teacher", teacher, ctx.input_shape)], eager, **timing)["teacher"].median_ms
    table = latency_table(ctx)
    test = ctx.eval_loader("test")
    torch_teacher_acc, torch_student_acc = evaluate(teacher, test), evaluate(student, test)
    split = ctx.test_split
    if not math.isclose(torch_student_acc, read_json(ctx.run.student_metrics)[f"{split}_accuracy"], abs_tol=1e-6):
        raise HantError("the reloaded student's accuracy differs from the fine-tuned one; the saved student is broken")
    teacher_acc = deployed_accuracy(ctx, teacher, PrecisionPlan(target.dtype), "teacher", images)
    student_acc = deployed_accuracy(ctx, student, plan, "student", images)
    teacher_ms, student_ms = measured["teacher"].median_ms, measured["student"].median_ms
    limit, within = judge_budget(ctx, selection["budget_ms"], student_ms, teacher_ms, table)
    report = {
        "recipe": ctx.recipe.name,
        "target": target.to_dict(),
        "accuracy_split": split,
        "teacher": {
            "model": ctx.model_desc["name"],
            "accuracy": teacher_acc,
            "torch_float32_accuracy": torch_teacher_acc,
            "latency_ms": teacher_ms,
            "latency_iqr_ms": [measured["teacher"].q1_ms, measured["teacher"].q3_ms],
            "profiled_latency_ms": table.extra["teacher_ms"],
            "torch_eager_float32_ms": eager_ms,
        },
        "student": {
            "accuracy": student_acc,
            "torch_float32_accuracy": torch_student_acc,
            "precision": plan.describe(),
            "latency_ms": student_ms,
            "latency_iqr_ms": [measured["student"].q1_ms, measured["student"].q3_ms],
            "predicted_latency_ms": selection["predicted_latency_ms"],
            "speedup": teacher_ms / student_ms,
            "changed_slots": changed_blocks(ctx, selection["choices"]),
        },
        "budget_ms": limit,
        "budget_fraction": limit / teacher_ms,
        "within_budget": within,
        "search": {
            "budget_ms": selection["budget_ms"],
            "status": selection["status"],
            "solve_seconds": selection["solve_seconds"],
            "gap": selection["gap"],
            "backend": selection["backend"],
            "total_score": selection["total_score"],
            "verify_rounds": selection["verify_rounds"],
        },
        "selection": selection["choices"],
        "slots": _slot_rows(ctx, table, selection["choices"]),
        "stage_seconds": {**ctx.run.stage_seconds(), "report": time.perf_counter() - started},
    }
    if ptq:
        report["teacher_int8"] = {
            "accuracy": deployed_accuracy(ctx, teacher, PrecisionPlan("int8"), "teacher_int8", images),
            "latency_ms": measured["teacher_int8"].median_ms,
            "latency_iqr_ms": [measured["teacher_int8"].q1_ms, measured["teacher_int8"].q3_ms],
        }
    write_report(ctx.run, report)
    return {"student_accuracy": student_acc, "student_latency_ms": student_ms, "within_budget": within}

