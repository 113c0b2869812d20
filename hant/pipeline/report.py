"""The run's report: ``report.json`` for machines, ``report.md`` for people."""
from __future__ import annotations

from ..io import read_json, write_json, write_text
from ..ops_zoo import CandidateSpec
from ..plots import plot_pareto
from ..tracking import Tracker
from .rundir import RunDir

PLOT_NAME = "pareto.png"
ACCURACY_SPLIT = {
    "test": "accuracy on the test split, which no stage selects on:",
    "val": "accuracy on the validation split, which chose the best epoch, since the data has no test/ split "
    "(an optimistic estimate; give the ImageFolder a test/ split for an unbiased one):",
}
"""How the report names the split its accuracies are on (``report.json``'s ``accuracy_split``)."""


def render_markdown(report: dict) -> str:
    """A short human-readable account of a run."""
    t, s = report["teacher"], report["student"]
    lines = [
        f"# hant report: {report['recipe']}",
        "",
        f"Target: {report['target']['device']} / {report['target']['backend']} / {report['target']['dtype']}, "
        f"batch {report['target']['batch_size']}, {report['target']['threads']} thread(s).",
        "",
        "Accuracy and latency as the target runs each network (one interleaved measurement); "
        + ACCURACY_SPLIT[report.get("accuracy_split", "test")],
        "",
        "| | precision | accuracy (%) | latency (ms) | predicted (ms) |",
        "|---|---|---|---|---|",
        f"| teacher ({t['model']}) | {report['target']['dtype']} | {t['accuracy']:.2f} | {t['latency_ms']:.3f} | |",
        f"| student | {s.get('precision', report['target']['dtype'])} | {s['accuracy']:.2f} | {s['latency_ms']:.3f} "
        f"| {s['predicted_latency_ms']:.3f} |",
    ]
    if "teacher_int8" in report:
        q = report["teacher_int8"]
        lines.append(f"| teacher, int8 post-training quantization | int8 | {q['accuracy']:.2f} | {q['latency_ms']:.3f} | |")
    lines += [
        "",
        f"For scale: the teacher in torch eager float32 takes {t['torch_eager_float32_ms']:.3f} ms "
        f"at {t['torch_float32_accuracy']:.2f} %." if "torch_eager_float32_ms" in t else "",
        "",
        f"Budget {report['budget_ms']:.3f} ms ({report['budget_fraction']:.2f} × teacher): "
        f"{'met' if report['within_budget'] else 'NOT met'}; speed-up {s['speedup']:.2f}×, "
        f"{s['changed_slots']} of {len(report['selection'])} slots changed.",
        "",
        f"Search: {report['search']['backend']}, {report['search']['status']}, "
        f"{report['search']['solve_seconds'] * 1000:.1f} ms to solve, gap {report['search']['gap']:.2g}.",
        "",
        f"![latency against accuracy]({PLOT_NAME})",
        "",
        "| slot | chosen operation | precision | latency (ms) | teacher block (ms) | score |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['slot']} | `{r['candidate']}` | {r.get('precision', report['target']['dtype'])} | {r['latency_ms']:.3f} "
        f"| {r['teacher_latency_ms']:.3f} | {r['score']:.4g} |"
        for r in report["slots"]
    ]
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {sec:.1f} |" for stage, sec in report["stage_seconds"].items()]
    return "\n".join(lines) + "\n"


def log_report(tracker: Tracker, run: RunDir) -> None:
    """Send the report's headline numbers, the selection and the latency/score table to W&B."""
    report = read_json(run.report_json)
    tracker.set_summary({k: report[k] for k in ("teacher", "student", "budget_ms", "within_budget")})
    tracker.log_table("selection", ["slot", "candidate"], [[s, k] for s, k in report["selection"].items()])
    tracker.log_image("pareto", run.root / PLOT_NAME)
    if not run.scores.is_file():
        return  # a `hant prune` run: no zoo, no candidate scores
    scores = read_json(run.scores)
    table = read_json(run.latency)["entries"]
    zoo = read_json(run.zoo)
    rows = []
    for slot, specs in zoo.items():
        for spec in specs:
            rec = scores[slot].get(spec["key"], {})
            chosen = report["selection"].get(slot) == spec["key"]
            latency = table.get(CandidateSpec.from_dict(spec).uid, {}).get("median_ms")
            rows.append([slot, spec["key"], latency, rec.get("score"), rec.get("status"), chosen])
    tracker.log_table("candidates", ["slot", "candidate", "latency_ms", "score", "status", "chosen"], rows)


def report_points(report: dict, label: str = "student") -> list[dict]:
    """The teacher and student of one report as plot points."""
    t, s = report["teacher"], report["student"]
    return [
        {"label": "teacher", "latency_ms": t["latency_ms"], "predicted_ms": None, "accuracy": t["accuracy"]},
        {"label": label, "latency_ms": s["latency_ms"], "predicted_ms": s["predicted_latency_ms"], "accuracy": s["accuracy"]},
    ]


def write_report(run: RunDir, report: dict) -> None:
    """Write report.json, report.md and the latency/accuracy plot into the run directory."""
    plot_pareto(report_points(report), run.root / PLOT_NAME, f"{report['recipe']}: {report['target']['device']}, "
                f"batch {report['target']['batch_size']}")
    write_json(run.report_json, report)
    write_text(run.report_md, render_markdown(report))
