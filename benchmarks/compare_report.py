"""What compare_methods.py reports: per-seed rows, mean ± std and gaps to hant, fairness rules, table, plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from compare_runner import FASTNAS_SCORE_IMAGES, TAYLOR_BATCHES, Student
from method_stats import mean_std, paired_bootstrap_gap

from hant.config import Recipe
from hant.deploy import CALIBRATION_SAMPLES

REFERENCE = "hant"
"""The method every accuracy gap is taken to."""


def summarize(students: list[Student], stats: dict, correct: dict[str, np.ndarray], budgets: list[float],
              resamples: int) -> dict:
    """Rows per (method, budget, seed) with accuracy, measured and predicted latency and the budget
    verdict (measured ≤ budget × the teacher measured in the same run); per (method, budget) their
    mean ± std over seeds and the paired bootstrap gap to hant; the students over budget."""
    teacher_ms = stats["teacher"].median_ms
    out: dict = {"teacher": {"accuracy": 100.0 * float(correct["teacher"].mean()), "measured_latency_ms": teacher_ms}}
    if "teacher_int8" in stats:
        out["teacher_int8"] = {"accuracy": 100.0 * float(correct["teacher_int8"].mean()),
                               "measured_latency_ms": stats["teacher_int8"].median_ms,
                               "within_budget": {f"{b:g}": stats["teacher_int8"].median_ms <= b * teacher_ms for b in budgets}}
    results: dict = {}
    vectors: dict[tuple[str, float], list[np.ndarray]] = {}
    violations = []
    for s in students:
        ms, limit = stats[s.name].median_ms, s.budget * teacher_ms
        row = {"accuracy": 100.0 * float(correct[s.name].mean()), "measured_latency_ms": ms,
               "latency_iqr_ms": [stats[s.name].q1_ms, stats[s.name].q3_ms], "predicted_latency_ms": s.predicted_ms,
               "limit_ms": limit, "within_budget": ms <= limit, "precision": s.plan.describe(), "notes": s.notes}
        results.setdefault(s.method, {}).setdefault(f"{s.budget:g}", {"seeds": {}})["seeds"][str(s.seed)] = row
        vectors.setdefault((s.method, s.budget), []).append(correct[s.name])
        if not row["within_budget"]:
            violations.append(f"{s.name}: {ms:.3f} ms measured > {limit:.3f} ms ({s.budget:g} × teacher)")
    for method, per_budget in results.items():
        for key, cell in per_budget.items():
            rows = list(cell["seeds"].values())
            acc, acc_std = mean_std([r["accuracy"] for r in rows])
            ms, ms_std = mean_std([r["measured_latency_ms"] for r in rows])
            cell.update({"accuracy_mean": acc, "accuracy_std": acc_std, "latency_mean_ms": ms, "latency_std_ms": ms_std,
                         "all_within_budget": all(r["within_budget"] for r in rows)})
            budget = float(key)
            if method != REFERENCE and (REFERENCE, budget) in vectors:
                cell["gap_to_hant"] = paired_bootstrap_gap(np.stack(vectors[method, budget]),
                                                           np.stack(vectors[REFERENCE, budget]), resamples=resamples)
    out["results"] = results
    out["violations"] = violations
    out["summary"] = {m: {k: {"acc": round(c["accuracy_mean"], 2), "acc_std": round(c["accuracy_std"], 2),
                              "ms": round(c["latency_mean_ms"], 3), "ms_std": round(c["latency_std_ms"], 3),
                              "within": c["all_within_budget"],
                              **({"gap": round(c["gap_to_hant"]["gap"], 2),
                                  "ci95": [round(c["gap_to_hant"]["ci_low"], 2), round(c["gap_to_hant"]["ci_high"], 2)]}
                                 if "gap_to_hant" in c else {})}
                          for k, c in per_budget.items()} for m, per_budget in results.items()}
    return out


def fairness_rules(recipe: Recipe, seeds: list[int], bisect_iterations: int) -> list[str]:
    """The rules every method ran under, in words with this recipe's numbers (written into the JSON)."""
    f, d, p, s = recipe.finetune, recipe.distill, recipe.prune, recipe.search
    return [
        f"One teacher ({recipe.teacher.model}) made once by the recipe and shared by every method and seed; the same data "
        f"splits ({recipe.data.dataset}, {recipe.data.image_size} px); accuracy on the test split, which no method selects on.",
        f"Every student is fine-tuned by the same schedule: {f.epochs} epochs, {f.optimizer}, lr {f.lr:g}, weight decay "
        f"{f.weight_decay:g}, {f.warmup_epochs} warm-up epoch(s), KD from the teacher at T = {f.kd_temperature:g} with "
        f"alpha = {f.kd_alpha:g}, best epoch on validation; the better of pruned and fine-tuned on validation is kept.",
        f"Before it, each method's own work: hant distills every zoo candidate layer-wise for {d.epochs} epoch(s); halp prunes "
        f"over {p.steps} steps of {p.epochs_per_step} training epoch(s); splamp, Torch-Pruning (Taylor: gradients of "
        f"{TAYLOR_BATCHES} training batches) and FastNAS (sensitivity on {FASTNAS_SCORE_IMAGES} validation images) prune "
        "one-shot.",
        f"Budgets are fractions of the teacher's latency on {recipe.target.describe()}. hant, halp and splamp meet them "
        f"with their own latency model and measured verification (margin {s.margin:g}); Torch-Pruning's ratio and FastNAS's "
        f"FLOPs fraction are bisected ({bisect_iterations} halvings) on the pruned network measured beside the teacher, "
        "with the same margin.",
        "All reported latencies come from ONE interleaved measurement of the teacher and every student on the target; a "
        "student is within budget when its measured latency is at most the budget times the teacher's in that run.",
        f"Accuracy is as deployed: every network is exported and computed by the target's runtime ({recipe.target.dtype}"
        + (f", quantized by it on the same {CALIBRATION_SAMPLES} training images)" if recipe.target.dtype == "int8" else ")")
        + ".",
        f"Seeds {seeds}: each varies distillation, pruning and fine-tuning randomness (batch order, augmentation, "
        "initialisation); gaps to hant are seed-averaged accuracies, with a paired bootstrap over test images.",
    ]


def table_lines(r: dict) -> list[str]:
    """The comparison of one recipe as a text table."""
    t = r["teacher"]
    lines = [f"{r['recipe']}: teacher {r['teacher_model']} {t['accuracy']:.2f} %, {t['measured_latency_ms']:.3f} ms "
             f"on {r['target_described']}; seeds {r['seeds']}, {r['test_images']} test images"]
    if "teacher_int8" in r:
        q = r["teacher_int8"]
        lines.append(f"teacher int8 PTQ: {q['accuracy']:.2f} %, {q['measured_latency_ms']:.3f} ms")
    lines.append(f"{'method':<14}{'budget':>7}{'limit ms':>10}{'ms (mean±std)':>18}{'acc % (mean±std)':>19}"
                 f"{'gap to hant [95% CI]':>26}  within")
    for b in r["budgets"]:
        key = f"{b:g}"
        for method, per_budget in r["results"].items():
            c = per_budget.get(key)
            if c is None:
                continue
            g = c.get("gap_to_hant")
            gap = f"{g['gap']:+.2f} [{g['ci_low']:+.2f}, {g['ci_high']:+.2f}]" if g else ""
            lines.append(f"{method:<14}{b:>7g}{b * t['measured_latency_ms']:>10.3f}"
                         f"{c['latency_mean_ms']:>11.3f} ±{c['latency_std_ms']:>5.3f}"
                         f"{c['accuracy_mean']:>12.2f} ±{c['accuracy_std']:>5.2f}{gap:>26}  "
                         f"{'yes' if c['all_within_budget'] else 'NO'}")
    for name, reason in r["absent"].items():
        lines.append(f"{name} absent: {reason}")
    for name, reason in r["unreachable"].items():
        lines.append(f"{name} unreachable: {reason}")
    lines += [f"OVER BUDGET: {v}" for v in r["violations"]]
    return lines


def plot(results: dict, path: Path) -> None:
    """Accuracy against measured latency, mean ± std over seeds, one panel per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4.8), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        t = r["teacher"]
        for method, per_budget in r["results"].items():
            cells = sorted(per_budget.values(), key=lambda c: c["latency_mean_ms"])
            ax.errorbar([c["latency_mean_ms"] for c in cells], [c["accuracy_mean"] for c in cells],
                        xerr=[c["latency_std_ms"] for c in cells], yerr=[c["accuracy_std"] for c in cells],
                        marker="o", capsize=3, label=method)
        ax.scatter([t["measured_latency_ms"]], [t["accuracy"]], marker="*", s=150, c="k", label="teacher", zorder=3)
        if "teacher_int8" in r:
            q = r["teacher_int8"]
            ax.scatter([q["measured_latency_ms"]], [q["accuracy"]], marker="P", s=90, c="grey", label="teacher int8 PTQ")
        for b in r["budgets"]:
            ax.axvline(b * t["measured_latency_ms"], ls=":", c="grey")
        ax.set_xlabel(f"measured latency (ms, {r['target_described']})")
        ax.set_ylabel("test accuracy (%, mean ± std over seeds)")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
