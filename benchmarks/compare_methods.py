"""Full HANT against pruning baselines and int8 PTQ at equal measured latency, over seeds, per teacher.

For each recipe (one teacher, one task, one deployment target), every method makes a student at
each budget (a fraction of the teacher's latency measured on the target) and seed (:mod:`compare_runner`):
hant (the full zoo), halp, splamp, Torch-Pruning magnitude and Taylor, and ModelOpt FastNAS where
``nvidia-modelopt`` runs. All are fine-tuned by the recipe's one ``finetune`` schedule with KD from
the teacher. Then the teacher and every student are measured interleaved in ONE run on the target and
evaluated as the target's runtime computes them (int8: quantized by it) on the test split; the
teacher's int8 post-training quantization stands beside them where the runtime has int8. Reported
per method and budget: accuracy and measured latency mean ± std over seeds, whether each student is
within its budget, and a paired bootstrap 95 % interval of the accuracy gap to hant (:mod:`method_stats`).

Writes ``compare_methods.json`` (``--quick``: ``compare_methods_quick.json``) and a plot of accuracy
against measured latency in ``--out-dir``; the last printed line is a JSON summary.

    flock /tmp/hant-measure.lock env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_methods.py \\
        [--recipe R.yaml ... | --teacher TIMM_NAME] [--seeds 3] [--with-0.2] [--quick]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_runner as runner  # noqa: E402
from compare_report import fairness_rules, plot, summarize, table_lines  # noqa: E402
from fashion_setup import ensure_fashion_mnist  # noqa: E402
from modelopt_baseline import fastnas_unavailable  # noqa: E402

from hant.config import Recipe, check_fields, load_recipe  # noqa: E402
from hant.deploy import PrecisionPlan  # noqa: E402
from hant.errors import HantError  # noqa: E402
from hant.io import write_json  # noqa: E402
from hant.latency import measure  # noqa: E402
from hant.pipeline.calibration_data import calibration_images  # noqa: E402
from hant.pipeline.context import Context  # noqa: E402
from hant.pipeline.rundir import RunDir  # noqa: E402
from hant.pipeline.stages import int8_baseline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPES = ("recipes/fashion_mnist_efficientnet_lite0.yaml", "recipes/compare_fashion_resnet18.yaml",
                   "recipes/compare_fashion_mobilenetv2.yaml")
METHODS = ("hant", "halp", "splamp", "tp_magnitude", "tp_taylor", "fastnas")
BISECT_ITERATIONS = 5
"""Halvings of the knob range for the Torch-Pruning ratio and the FastNAS FLOPs fraction."""
BISECT_TIME_S = 10.0
"""Cap on the seconds of one bisection trial's measurement (teacher and one pruned network)."""
MEASURE_S_PER_NETWORK = 5.0
"""Seconds of the final interleaved measurement per network measured (teacher and students)."""


def quick(recipe: Recipe) -> None:
    """Shrink every schedule for a smoke run of every code path (its numbers mean nothing)."""
    recipe.name += "_quick"
    recipe.teacher.train.epochs = min(recipe.teacher.train.epochs, 6)  # a teacher above chance to distill from
    recipe.distill.epochs = 1
    recipe.finetune.epochs = 1
    recipe.prune.steps, recipe.prune.fractions = 2, [1.0, 0.5, 0.25]
    recipe.zoo.families = {"identity": {}, "pruned": {"widths": [0.25]}, "dwsep": {"kernels": [3]}}  # reaches 0.3x
    recipe.profile.time_budget_s, recipe.profile.calibration_networks, recipe.profile.calibration_time_s = 10, 4, 0
    recipe.search.verify_rounds = 2


def recipes_from(args: argparse.Namespace) -> list[tuple[str, Recipe]]:
    """(path, recipe) for each ``--recipe`` (default: the three comparison recipes); ``--teacher`` puts
    that timm model into the one recipe given (default: the ResNet-18 one), trained by it."""
    paths = args.recipe or ([DEFAULT_RECIPES[1]] if args.teacher else list(DEFAULT_RECIPES))
    if args.teacher and len(paths) != 1:
        raise HantError("--teacher replaces the teacher of one recipe; give at most one --recipe with it")
    out = []
    for path in paths:
        recipe = load_recipe(ROOT / path if not Path(path).is_absolute() else path)
        if args.teacher:
            recipe.teacher.model, recipe.teacher.kwargs = args.teacher, {}
            recipe.teacher.pretrained, recipe.teacher.checkpoint = False, None
            recipe.name = f"compare_{recipe.data.dataset}_{args.teacher}"
        if args.quick:
            quick(recipe)
        check_fields(recipe)
        out.append((str(path), recipe))
    return out


def compare(recipe: Recipe, work: Path, budgets: list[float], seeds: list[int], methods: list[str],
            bisect_iterations: int, resamples: int) -> dict:
    """Every method's students, one interleaved measurement, deployed per-image accuracy, statistics."""
    timings: dict[str, float] = {}
    absent: dict[str, str] = {}
    unreachable: dict[str, str] = {}
    t = time.perf_counter()
    students = runner.hant_students(recipe, work, budgets, seeds, unreachable)
    timings["hant_s"] = time.perf_counter() - t
    first = RunDir(runner.seed_root(work, "hant", seeds[0]))
    ctx = Context(recipe, first)
    target = recipe.target
    ptq = int8_baseline(target)
    images = calibration_images(ctx) if target.dtype == "int8" or ptq else None

    pruners = [m for m in methods if m in runner.PIPELINE_PRUNERS]
    if pruners:
        t = time.perf_counter()
        students += runner.pruner_students(recipe, work, pruners, budgets, seeds, first)
        timings["halp_splamp_s"] = time.perf_counter() - t
    if any(m.startswith("tp_") for m in methods):
        t = time.perf_counter()
        students += [s for s in runner.tp_students(ctx, budgets, seeds, images, bisect_iterations, BISECT_TIME_S)
                     if s.method in methods]
        timings["torch_pruning_s"] = time.perf_counter() - t
    if "fastnas" in methods:
        reason = fastnas_unavailable()
        if reason is None:
            t = time.perf_counter()
            students += runner.fastnas_students(ctx, work, budgets, seeds, images, bisect_iterations, BISECT_TIME_S)
            timings["fastnas_s"] = time.perf_counter() - t
        else:
            absent["fastnas"] = reason

    # ONE interleaved measurement of the teacher (and its int8 PTQ) and every student on the target
    t = time.perf_counter()
    teacher = ctx.teacher
    items = [("teacher", teacher, ctx.input_shape)] + [(s.name, s.model, ctx.input_shape) for s in students]
    plans = {s.name: s.plan for s in students}
    if ptq:
        items.append(("teacher_int8", teacher, ctx.input_shape))
        plans["teacher_int8"] = PrecisionPlan("int8")
    calibration = {n: images for n, _, _ in items} if images is not None else None
    stats = measure(items, target, plans=plans, calibration=calibration,
                    rel_precision=min(0.01, recipe.profile.rel_precision), time_budget_s=MEASURE_S_PER_NETWORK * len(items))
    timings["measure_s"] = time.perf_counter() - t

    t = time.perf_counter()
    correct = {"teacher": runner.correct_vector(teacher, ctx, PrecisionPlan(target.dtype), images, "teacher")}
    if ptq:
        correct["teacher_int8"] = runner.correct_vector(teacher, ctx, PrecisionPlan("int8"), images, "teacher_int8")
    for s in students:
        correct[s.name] = runner.correct_vector(s.model, ctx, s.plan, images, s.name)
    timings["evaluate_s"] = time.perf_counter() - t
    result = summarize(students, stats, correct, budgets, resamples)
    result.update({
        "recipe": recipe.name, "teacher_model": recipe.teacher.model, "target": target.to_dict(),
        "target_described": target.describe(), "budgets": budgets, "seeds": seeds,
        "test_images": int(len(correct["teacher"])), "absent": absent, "unreachable": unreachable,
        "ptq": ("teacher_int8: the teacher's int8 post-training quantization by the target runtime" if ptq else
                "the target is int8: the teacher row is itself the teacher's int8 post-training quantization "
                "(the target runtime's quantizer), the reference every budget is a fraction of"
                if target.dtype == "int8" else f"the target runtime ({target.backend}) has no int8 here"),
        "fairness": fairness_rules(recipe, seeds, bisect_iterations),
        "timings_s": timings,
    })
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", action="append", help="a recipe (repeatable); default: the three comparison recipes")
    p.add_argument("--teacher", help="a timm model name: the teacher of the (one) recipe, trained by it")
    p.add_argument("--work-dir", default=str(ROOT / "runs/compare_methods"))
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks/results"))
    p.add_argument("--budgets", default="0.5,0.3", help="comma-separated fractions of the teacher's latency")
    p.add_argument("--with-0.2", dest="with_02", action="store_true", help="add the budget 0.2")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method (the teacher is shared)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the test images")
    p.add_argument("--quick", action="store_true", help="tiny schedules: a smoke test of every code path")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")] + ([0.2] if args.with_02 else [])
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    try:
        if unknown or "hant" not in methods:
            raise HantError(f"--methods must include hant (every gap is to it) and name only {list(METHODS)}; got {methods}")
        recipes = recipes_from(args)
        ensure_fashion_mnist([r for _, r in recipes], say=print)
    except HantError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    results = {}
    for path, recipe in recipes:
        seeds = [recipe.seed + k for k in range(args.seeds)]
        iterations = 2 if args.quick else BISECT_ITERATIONS
        results[recipe.name] = {"recipe_file": path, **compare(recipe, Path(args.work_dir) / recipe.name, budgets, seeds,
                                                               methods, iterations, args.resamples)}
        for line in table_lines(results[recipe.name]):
            print(line)
    out = Path(args.out_dir)
    stem = "compare_methods_quick" if args.quick else "compare_methods"
    full = {"recipes": results, "total_s": time.perf_counter() - t0, "quick": args.quick}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", full)
    plot(results, out / f"{stem}.png")
    print(f"plot: {out / f'{stem}.png'}; details: {out / f'{stem}.json'}; {full['total_s']:.0f} s")
    print(json.dumps({name: r["summary"] for name, r in results.items()}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
