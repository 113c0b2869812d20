"""Mixed precision against all-int8 at one budget: does choosing the precision per slot pay?

Runs ``--recipe`` (default ``recipes/demo_mixed.yaml``: an OpenVINO int8 network whose slots may each
stay in float32), then the same recipe with no per-slot choice (every slot in int8), each through the
whole pipeline in its own run directory; the second shares the first's trained teacher. Both search
under one budget in milliseconds: ``--budget`` times the float32 teacher measured on the target in
float32 (the teacher's own latency in the run's precision would be int8's). Then the float32
teacher, the teacher's int8 post-training quantization and both students are timed interleaved in
one run on the target, each as deployed (its own precision plan), and evaluated on the test split
as the runtime computes them. The last line printed is a JSON object.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/mixed_precision.py [--root runs/mixed]
"""
from __future__ import annotations

import argparse
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
from hant.pipeline.budget_series import share_upstream
from hant.pipeline.calibration_data import calibration_images
from hant.student import load_student, student_deployment


def run(ctx: Context) -> RunDir:
    run_stages(ctx, "report")
    return ctx.run


def float32_teacher_ms(ctx: Context, images, time_budget_s: float) -> float:
    """The trained teacher's median latency on the run's target, deployed wholly in float32."""
    stats = measure([("teacher", ctx.teacher, ctx.input_shape)], ctx.recipe.target,
                    plans={"teacher": PrecisionPlan("float32")}, calibration={"teacher": images},
                    rel_precision=0.01, time_budget_s=time_budget_s)
    return stats["teacher"].median_ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/demo_mixed.yaml")
    p.add_argument("--root", default="runs/mixed_precision")
    p.add_argument("--budget", type=float, default=0.3, help="fraction of the float32 teacher's measured latency")
    p.add_argument("--time-budget", type=float, default=120.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    mixed_recipe = load_recipe(args.recipe)
    if not mixed_recipe.zoo.precisions:
        raise SystemExit(f"{args.recipe} offers no per-slot precision (zoo.precisions is empty)")
    ctx = Context(mixed_recipe, RunDir(Path(args.root) / "mixed"))
    run_stages(ctx, "slots")
    images = calibration_images(ctx)
    teacher_fp32_ms = float32_teacher_ms(ctx, images, args.time_budget / 4)
    budget_ms = args.budget * teacher_fp32_ms
    mixed_recipe.search.budget_ms = budget_ms
    mixed = run(Context(mixed_recipe, ctx.run))

    int8_recipe = load_recipe(args.recipe)
    int8_recipe.name += "_int8"
    int8_recipe.zoo.precisions = []
    int8_recipe.search.budget_ms = budget_ms
    int8_run = RunDir(Path(args.root) / "int8")
    share_upstream(mixed, int8_run, stages=("teacher",), paths=(mixed.teacher_dir,))
    all_int8 = run(Context(int8_recipe, int8_run))

    target = mixed_recipe.target
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
    print(f"Budget: {budget_ms:.3f} ms ({args.budget} x the float32 teacher's {teacher_fp32_ms:.3f} ms, measured "
          f"before the searches), target {target.describe()}")
    print()
    print("| network | precision | test accuracy (%) | latency (ms) | within budget |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        within = "yes" if r["latency_ms"] <= budget_ms else "no"
        print(f"| {name} | {r['precision']} | {r['accuracy']:.2f} | {r['latency_ms']:.3f} | {within} |")
    print(json.dumps({"budget_ms": budget_ms, "teacher_float32_ms_before_search": teacher_fp32_ms, "rows": rows,
                      "mixed_at_least_as_accurate": rows["mixed"]["accuracy"] >= rows["all_int8"]["accuracy"],
                      "mixed_over_all_int8_latency": rows["mixed"]["latency_ms"] / rows["all_int8"]["latency_ms"],
                      "selection_mixed": read_json(mixed.selection)["choices"],
                      "selection_all_int8": read_json(all_int8.selection)["choices"],
                      "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
