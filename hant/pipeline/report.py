"""The run's report: ``report.json`` for machines, ``report.md`` for people."""
from __future__ import annotations

from ..io import read_json, write_json, write_text
from ..ops_zoo import CandidateSpec
from ..tracking import Tracker
from .rundir import RunDir


def render_markdown(report: dict) -> str:
    """A short human-readable account of a run."""
    t, s = report["teacher"], report["student"]
    lines = [
        f"# hant report: {report['recipe']}",
        "",
        f"Target: {report['target']['device']} / {report['target']['backend']} / {report['target']['dtype']}, "
        f"batch {report['target']['batch_size']}, {report['target']['threads']} thread(s).",
        "",
        "| | accuracy (%) | latency (ms) | predicted (ms) |",
        "|---|---|---|---|",
        f"| teacher ({t['model']}) | {t['accuracy']:.2f} | {t['latency_ms']:.3f} | |",
        f"| student | {s['accuracy']:.2f} | {s['latency_ms']:.3f} | {s['predicted_latency_ms']:.3f} |",
        "",
        f"Budget {report['budget_ms']:.3f} ms ({report['budget_fraction']:.2f} × teacher): "
        f"{'met' if report['within_budget'] else 'NOT met'}; speed-up {s['speedup']:.2f}×, "
        f"{s['changed_slots']} of {len(report['selection'])} slots changed.",
        "",
        f"Search: {report['search']['backend']}, {report['search']['status']}, "
        f"{report['search']['solve_seconds'] * 1000:.1f} ms to solve, gap {report['search']['gap']:.2g}.",
        "",
        "| slot | chosen operation |",
        "|---|---|",
    ]
    lines += [f"| {slot} | `{key}` |" for slot, key in report["selection"].items()]
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {sec:.1f} |" for stage, sec in report["stage_seconds"].items()]
    return "\n".join(lines) + "\n"


def log_report(tracker: Tracker, run: RunDir) -> None:
    """Send the report's headline numbers, the selection and the latency/score table to W&B."""
    report = read_json(run.report_json)
    tracker.set_summary({k: report[k] for k in ("teacher", "student", "budget_ms", "within_budget")})
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
    tracker.log_table("selection", ["slot", "candidate"], [[s, k] for s, k in report["selection"].items()])


def write_report(run: RunDir, report: dict) -> None:
    """Write both forms of the report into the run directory."""
    write_json(run.report_json, report)
    write_text(run.report_md, render_markdown(report))
