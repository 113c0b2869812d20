"""The demo's sparse student: ResNet-18 with activation sparsity at one ratio in every slot, end to end.

Runs ``--recipe`` (default ``recipes/act_sparse_demo.yaml``) through the pipeline up to and
including phase 1 (distill) in ``--run-dir``, finished stages reused, so every slot's ``act_sparse``
candidates are sparse-trained with frozen masks. Then assembles the student with ``act_sparse`` at
``--ratio`` in every slot from those distilled candidates, fine-tunes it end to end as the finetune
stage does (the recipe's ``finetune``, KD from the teacher, masks fixed), and evaluates teacher,
assembled and fine-tuned student on the held-out split. Finally it times, interleaved in one run on
the recipe's target, the teacher (torch's dense convolutions), the teacher with every slot through
the masked kernel at s = 0 (the kernel's own dense path) and the student. Prints a table; writes
``sparse_student.json`` into the run directory and prints the same JSON object as its last line.
The fine-tuned student is saved under the run directory and reused while phase 1 and the recipe's
finetune settings are unchanged.

    OMP_NUM_THREADS=1 flock /tmp/hant-measure.lock .venv/bin/python benchmarks/sparse_student.py [--ratio 0.2]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import time

import torch
from torch import nn

from hant.config import load_recipe
from hant.distill.trainer import evaluate
from hant.errors import HantError
from hant.io import hash_obj, read_json, write_json
from hant.latency import measure
from hant.ops_zoo import CandidateSpec
from hant.pipeline import Context, RunDir, run_stages
from hant.pipeline.stages import finetune_student, trained_candidates
from hant.slots import get_submodule, set_submodule
from hant.sparsity import MaskedConv2d, SparseBlock, sparsify_block
from hant.student import assemble_student, load_student, save_student


def sparse_specs(ctx: Context, ratio: float) -> dict[str, CandidateSpec]:
    """Each slot's ``act_sparse`` candidate at ``ratio``; a slot without one is an error."""
    specs = {}
    for slot in ctx.slots:
        found = [c for c in ctx.zoo[slot.name] if c.family == "act_sparse" and math.isclose(c.params["ratio"], ratio)]
        if not found:
            raise HantError(f"slot {slot.name} has no act_sparse candidate at ratio {ratio:g}; add it to zoo.families.act_sparse.ratios")
        specs[slot.name] = found[0]
    return specs


def kernel_teacher(ctx: Context) -> nn.Module:
    """The teacher with every slot's convolutions run by the masked kernel keeping every pixel."""
    model = copy.deepcopy(ctx.teacher)
    for slot in ctx.slots:
        set_submodule(model, slot.path, sparsify_block(get_submodule(ctx.teacher, slot.path), tuple(slot.in_shape), 0.0))
    return model.eval()


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Module path -> a copy of the mask of every masked convolution of ``model``."""
    return {name: m.mask.clone() for name, m in model.named_modules() if isinstance(m, MaskedConv2d)}


def fine_tuned_student(ctx: Context, ratio: float) -> tuple[nn.Module, dict]:
    """The fine-tuned sparse student and its metrics (test accuracy of the assembled one included),
    reused from the run directory when made from the same phase 1 and settings."""
    folder = ctx.run.root / f"sparse_student_s{ratio:g}"
    key = hash_obj({"distill": ctx.run.stage_record("distill")["fingerprint"], "ratio": ratio,
                    "seed": ctx.recipe.seed, "finetune": dataclasses.asdict(ctx.recipe.finetune)})
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file() and read_json(metrics_file).get("key") == key:
        return load_student(folder), read_json(metrics_file)
    specs = sparse_specs(ctx, ratio)
    student = assemble_student(ctx.teacher, ctx.slots, specs, trained_candidates(ctx, specs))
    frozen = [bool(m.frozen) for m in student.modules() if isinstance(m, SparseBlock)]
    if not frozen or not all(frozen):
        raise HantError("phase 1 left some act_sparse candidate's masks unfrozen; run the distill stage again")
    before = masks(student)
    assembled_test = evaluate(student, ctx.eval_loader(ctx.test_split))
    metrics = finetune_student(ctx, student, folder / "train_state.pt")
    after = masks(student)
    if before.keys() != after.keys() or not all(torch.equal(before[k], after[k]) for k in before):
        raise HantError("fine-tuning changed a mask; masks must stay as phase 1 froze them")
    metrics = {"key": key, f"assembled_{ctx.test_split}_accuracy": assembled_test, **metrics}
    save_student(student.eval(), folder, ctx.model_desc, ctx.slots, specs, metadata={"recipe": ctx.recipe.name, "ratio": ratio})
    write_json(metrics_file, metrics)
    return student.eval(), metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/act_sparse_demo.yaml")
    p.add_argument("--run-dir", default="runs/sparse_student")
    p.add_argument("--ratio", type=float, default=0.2)
    p.add_argument("--time-budget", type=float, default=120.0, help="seconds of the interleaved measurement")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    started = time.perf_counter()
    recipe = load_recipe(args.recipe)
    ctx = Context(recipe, RunDir(args.run_dir))
    run_stages(ctx, "distill")
    pipeline_s = time.perf_counter() - started

    student, metrics = fine_tuned_student(ctx, args.ratio)
    split = ctx.test_split
    teacher, dense_kernel = ctx.teacher, kernel_teacher(ctx)
    test = ctx.eval_loader(split)
    accuracy = {"teacher": evaluate(teacher, test), "teacher_kernel_s0": evaluate(dense_kernel, test),
                "student": evaluate(student, test)}
    if not math.isclose(accuracy["student"], metrics[f"{split}_accuracy"], abs_tol=1e-6):
        raise HantError("the student's accuracy differs from the one measured after fine-tuning")
    names = ("teacher", "teacher_kernel_s0", "student")
    models = dict(zip(names, (teacher, dense_kernel, student)))
    stats = measure([(n, models[n], ctx.input_shape) for n in names], recipe.target,
                    rel_precision=0.01, time_budget_s=args.time_budget)
    ms = {n: stats[n].median_ms for n in names}
    result = {
        "recipe": recipe.name,
        "target": recipe.target.to_dict(),
        "ratio": args.ratio,
        "accuracy_split": split,
        "accuracy": {**accuracy, "student_assembled": metrics[f"assembled_{split}_accuracy"]},
        "student_kept": metrics["kept"],
        "val_accuracy": {"assembled": metrics["assembled_val_accuracy"], "finetuned": metrics["finetuned_val_accuracy"]},
        "accuracy_change_vs_teacher": accuracy["student"] - accuracy["teacher"],
        "latency_ms": ms,
        "latency_iqr_ms": {n: [stats[n].q1_ms, stats[n].q3_ms] for n in names},
        "speedup_vs_teacher": ms["teacher"] / ms["student"],
        "speedup_vs_kernel_s0": ms["teacher_kernel_s0"] / ms["student"],
        "pipeline_seconds": pipeline_s,
        "seconds": time.perf_counter() - started,
    }
    write_json(ctx.run.root / "sparse_student.json", result)
    print(f"act_sparse s={args.ratio:g} in every slot, target {recipe.target.describe()}, {split} accuracy")
    print()
    print("| network | accuracy (%) | latency (ms) | student's speed-up over it |")
    print("|---|---|---|---|")
    print(f"| teacher (torch dense) | {accuracy['teacher']:.2f} | {ms['teacher']:.2f} | {result['speedup_vs_teacher']:.2f}x |")
    print(f"| teacher, slots through the kernel at s=0 | {accuracy['teacher_kernel_s0']:.2f} | "
          f"{ms['teacher_kernel_s0']:.2f} | {result['speedup_vs_kernel_s0']:.2f}x |")
    print(f"| student, assembled (phase 1 only) | {metrics[f'assembled_{split}_accuracy']:.2f} | | |")
    print(f"| student, fine-tuned (kept: {metrics['kept']}) | {accuracy['student']:.2f} | {ms['student']:.2f} | |")
    print()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
