"""Full HANT against latency-aware pruning (HALP, SP-LAMP) and Torch-Pruning, side by side.

One teacher (the recipe's, trained once and cached in the work directory), one task (the harder
embedded digits), the same budgets (fractions of the teacher's latency on the recipe's target) and
the same fine-tuning schedule (the recipe's ``finetune``, with KD from the teacher) for every method:

- ``hant``: the recipe's full zoo, layer-wise distillation, integer program, verified on measure;
- ``halp`` and ``splamp`` run as ``hant prune`` does (``hant.pipeline.prune_series``), on the same teacher:
  ``halp``: pruning only, over coupled channel groups (residual streams included), BatchNorm
  Taylor saliency, latency-table knapsack, pruning steps spread over training;
- ``splamp``: LAMP scores on filter norms, one global threshold under the latency table;
- ``tp_magnitude`` / ``tp_taylor``: Torch-Pruning's MetaPruner with L2-magnitude / Taylor
  importance at a uniform ratio found by bisection on measured latency.

Every latency in the table comes from one interleaved measurement of the teacher and every student;
accuracies are on the held-out test split. Prints a table, writes ``compare_methods.png`` (accuracy
against measured latency) and ``compare_methods.json`` in the work directory, and prints the JSON
object (method → budget → accuracy, measured and predicted latency) as its last line.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/compare_methods.py [--quick]
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

from tp_baseline import bisect_ratio, tp_prune  # noqa: E402

from hant import load_student  # noqa: E402
from hant.config import load_recipe  # noqa: E402
from hant.distill.trainer import evaluate, train_classifier  # noqa: E402
from hant.io import read_json  # noqa: E402
from hant.latency import measure  # noqa: E402
from hant.pipeline.budget_series import run_budget_series  # noqa: E402
from hant.pipeline.context import Context  # noqa: E402
from hant.pipeline.rundir import RunDir  # noqa: E402
from hant.pipeline.prune_series import run_prune_series  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("hant", "halp", "splamp", "tp_magnitude", "tp_taylor")


def quick(recipe) -> None:
    """Shrink every schedule for a smoke run (numbers are then meaningless)."""
    recipe.name += "_quick"
    recipe.teacher.train.epochs = 2
    recipe.distill.epochs = 1
    recipe.finetune.epochs = 1
    recipe.prune.steps, recipe.prune.fractions = 2, [1.0, 0.5, 0.25]
    recipe.zoo.families = {"identity": {}, "pruned": {"widths": [0.25, 0.5]}}
    recipe.profile.time_budget_s = 10
    recipe.search.verify_rounds = 2


def finetune(model, ctx: Context, teacher) -> None:
    """The pipeline's fine-tuning schedule, for the Torch-Pruning baselines (HANT, HALP and SP-LAMP
    are fine-tuned by their pipelines' finetune stages)."""
    cfg = ctx.recipe.finetune
    model.requires_grad_(True)
    torch.manual_seed(ctx.recipe.seed)
    train_classifier(
        model, ctx.train_loader(seed_offset=2), ctx.eval_loader("val"), cfg, teacher=teacher,
        kd_temperature=cfg.kd_temperature, kd_alpha=cfg.kd_alpha, augment=ctx.augment(), desc="finetune",
        seed=ctx.recipe.seed + 2,
    )
    model.eval()


def plot(results: dict, teacher: dict, path: Path, budgets: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip(METHODS, "o^sDv"))
    for method, per_budget in results.items():
        pts = sorted((r["measured_latency_ms"], r["accuracy"]) for r in per_budget.values())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers.get(method, "o"), label=method)
    ax.scatter([teacher["measured_latency_ms"]], [teacher["accuracy"]], marker="*", s=150, c="k", label="teacher")
    for b in budgets:
        ax.axvline(b * teacher["measured_latency_ms"], ls=":", c="grey")
    ax.set_xlabel("measured latency (ms, batch 64, 1 thread)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("HANT vs pruning at equal latency budgets (digits_hard)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes/hant_digits_hard.yaml"))
    p.add_argument("--work-dir", default=str(ROOT / "runs/compare_methods"))
    p.add_argument("--budgets", default="0.5,0.3")
    p.add_argument("--quick", action="store_true", help="tiny schedules: a smoke test of every code path")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    recipe = load_recipe(args.recipe)
    if args.quick:
        quick(recipe)
    work = Path(args.work_dir) / recipe.name
    t0 = time.time()
    timings: dict[str, float] = {}

    # full HANT: teacher trained here once (the other methods reuse it)
    run_budget_series(recipe, work / "hant", budgets)
    timings["hant_total_s"] = time.time() - t0
    ctx = Context(recipe, RunDir(work / "hant"))
    teacher = ctx.teacher
    shape = ctx.input_shape
    students: dict[tuple[str, float], torch.nn.Module] = {}
    predicted: dict[tuple[str, float], float] = {}
    notes: dict[str, dict] = {}
    for b in budgets:
        sub = work / "hant" / f"budget-{b:g}"
        students["hant", b] = load_student(sub / "student")
        predicted["hant", b] = read_json(sub / "selection.json")["predicted_latency_ms"]

    t = time.time()
    for row in run_prune_series(recipe, work / "prune", ["halp", "splamp"], budgets, teacher_run=RunDir(work / "hant")):
        key = (row["method"], row["budget"])
        students[key] = load_student(Path(row["run_dir"]) / "student")
        predicted[key] = row["predicted_latency_ms"]
        p = row["prune"]
        notes[f"{row['method']}@{row['budget']:g}"] = {"counts": p["counts"], "fit_rounds": p["fit_rounds"], "steps": p["steps"]}
    timings["halp_splamp_s"] = time.time() - t
    predicted_teacher_ms = read_json(work / "prune" / "prune_latency.json")["predicted_teacher_ms"]

    example = torch.randn(2, *shape)
    batches = [next(iter(ctx.train_loader(seed_offset=4)))]
    for b in budgets:
        t = time.time()
        ratio, ratio_ms, trials = bisect_ratio(
            teacher, example, shape, recipe.target, b, recipe.search.margin,
            iterations=3 if args.quick else 7, rel_precision=recipe.profile.rel_precision, time_budget_s=10,
        )
        for imp in ("magnitude", "taylor"):
            net = tp_prune(teacher, example, ratio, imp, batches)
            finetune(net, ctx, teacher)
            students[f"tp_{imp}", b] = net
            predicted[f"tp_{imp}", b] = ratio_ms  # no latency model: the bisection's own measurement
        notes[f"tp@{b:g}"] = {"ratio": ratio, "trials": trials}
        timings[f"tp@{b:g}_s"] = time.time() - t

    # one interleaved measurement of the teacher and every student
    items = [("teacher", teacher, shape)] + [(f"{m}@{b:g}", net, shape) for (m, b), net in students.items()]
    stats = measure(items, recipe.target, rel_precision=0.02, time_budget_s=240)
    test = ctx.eval_loader("test")
    teacher_row = {"accuracy": evaluate(teacher, test), "measured_latency_ms": stats["teacher"].median_ms,
                   "predicted_latency_ms": predicted_teacher_ms}
    results: dict[str, dict] = {}
    for (m, b), net in students.items():
        results.setdefault(m, {})[f"{b:g}"] = {
            "accuracy": round(evaluate(net, test), 2),
            "measured_latency_ms": round(stats[f"{m}@{b:g}"].median_ms, 3),
            "predicted_latency_ms": round(predicted[m, b], 3),
        }
    timings["total_s"] = time.time() - t0

    t_ms = teacher_row["measured_latency_ms"]
    print(f"teacher {recipe.teacher.model}: test accuracy {teacher_row['accuracy']:.2f} %, {t_ms:.2f} ms "
          f"(target {recipe.target.describe()})")
    print(f"{'method':<14}{'budget':>7}{'limit ms':>10}{'measured':>10}{'predicted':>11}{'× teacher':>11}{'acc %':>8}  within")
    for b in budgets:
        for m in METHODS:
            row = results[m][f"{b:g}"]
            within = row["measured_latency_ms"] <= b * t_ms
            print(f"{m:<14}{b:>7g}{b * t_ms:>10.2f}{row['measured_latency_ms']:>10.2f}{row['predicted_latency_ms']:>11.2f}"
                  f"{row['measured_latency_ms'] / t_ms:>11.3f}{row['accuracy']:>8.2f}  {'yes' if within else 'NO'}")
    work.mkdir(parents=True, exist_ok=True)
    plot(results, teacher_row, work / "compare_methods.png", budgets)
    full = {"teacher": teacher_row, "results": results, "notes": notes, "timings_s": timings}
    (work / "compare_methods.json").write_text(json.dumps(full, indent=1, default=str))
    print(f"plot: {work / 'compare_methods.png'}; details: {work / 'compare_methods.json'}; {timings['total_s']:.0f} s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
