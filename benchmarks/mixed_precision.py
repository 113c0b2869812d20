"""Mixed precision against all-int8 at one budget: does choosing the precision per slot pay?

Runs ``--recipe`` (default ``recipes/demo_mixed.yaml``: OpenVINO float32 with int8 as a per-slot
choice, budget 0.3x the float32 teacher), then the same recipe with the whole network in int8
(``target.dtype: int8``, no per-slot choice) at the same budget in milliseconds, each through the
whole pipeline in its own run directory. Then the float32 teacher, the teacher's int8 post-training
quantization and both students are timed interleaved in one run on the target, each as deployed
(its own precision plan), and evaluated on the test split as the runtime computes them. The last
line printed is a JSON object.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/mixed_precision.py [--root runs/mixed]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from hant.config import load_recipe
from hant.deploy import PrecisionPlan, deployed_module
from hant.distill.trainer import evaluate
from hant.io import read_json
from hant.latency import measure
from hant.pipeline import Context, RunDir, run_stages
from hant.pipeline.calibration_data import task_calibration
from hant.student import load_student, student_deployment


def run(recipe, root: Path) -> RunDir:
    rundir = RunDir(root)
    run_stages(Context(recipe, rundir), "report")
    return rundir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/demo_mixed.yaml")
    p.add_argument("--root", default="runs/mixed_precision")
    p.add_argument("--time-budget", type=float, default=120.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    mixed_recipe = load_recipe(args.recipe)
    mixed = run(mixed_recipe, Path(args.root) / "mixed")
    table = read_json(mixed.latency)["extra"]
    budget_ms = mixed_recipe.search.budget * table["teacher_predicted_ms"]

    int8_recipe = load_recipe(args.recipe)
    int8_recipe.name += "_int8"
    int8_recipe.target = dataclasses.replace(int8_recipe.target, dtype="int8")
    int8_recipe.zoo.precisions = []
    int8_recipe.search.budget_ms = budget_ms
    all_int8 = run(int8_recipe, Path(args.root) / "int8")

    ctx = Context(mixed_recipe, mixed)
    target = mixed_recipe.target
    images = task_calibration(ctx)[0]
    students = {"mixed": mixed, "all_int8": all_int8}
    models = {"teacher": (ctx.teacher, PrecisionPlan("float32")), "teacher_int8": (ctx.teacher, PrecisionPlan("int8"))}
    for name, rundir in students.items():
        models[name] = (load_student(rundir.student_dir), student_deployment(rundir.student_dir)[1])
    stats = measure(
        [(n, m, ctx.input_shape) for n, (m, _) in models.items()], target,
        plans={n: plan for n, (_, plan) in models.items()}, calibration={n: images for n in models},
        rel_precision=0.01, time_budget_s=args.time_budget,
    )
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, plan) in models.items():
            scored = deployed_module(model, ctx.input_shape, target, plan, Path(tmp), name, images)
            rows[name] = {
                "precision": plan.describe(),
                "latency_ms": stats[name].median_ms,
                "accuracy": evaluate(scored, ctx.eval_loader("test"), torch.device("cpu")),
            }
    print(f"Budget: {budget_ms:.3f} ms ({mixed_recipe.search.budget} x the float32 teacher's predicted "
          f"{table['teacher_predicted_ms']:.3f} ms), target {target.describe()}")
    print()
    print("| network | precision | test accuracy (%) | latency (ms) | within budget |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        within = "yes" if r["latency_ms"] <= budget_ms else "no"
        print(f"| {name} | {r['precision']} | {r['accuracy']:.2f} | {r['latency_ms']:.3f} | {within} |")
    print(json.dumps({"budget_ms": budget_ms, "rows": rows,
                      "mixed_at_least_as_accurate": rows["mixed"]["accuracy"] >= rows["all_int8"]["accuracy"],
                      "mixed_over_all_int8_latency": rows["mixed"]["latency_ms"] / rows["all_int8"]["latency_ms"],
                      "selection_mixed": read_json(mixed.selection)["choices"],
                      "selection_all_int8": read_json(all_int8.selection)["choices"],
                      "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
