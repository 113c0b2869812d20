"""A series of latency budgets over one teacher: the expensive stages run once and are shared.

Teacher, slots, zoo, profile and distill run in the base run directory; each budget gets a
subdirectory ``budget-<fraction>`` whose upstream files link to the base's, so its search,
fine-tune and report run alone. The students are then plotted together. A budget that no
selection reaches is a row saying so (``infeasible``, with the smallest achievable latency); the
other budgets still run.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Callable

from ..config import Recipe
from ..errors import InfeasibleBudgetError
from ..io import read_json, write_json
from ..plots import plot_pareto
from ..tracking import Tracker
from .context import Context
from .report import report_points
from .rundir import RunDir
from .runner import run_stages

SHARED_STAGES = ("teacher", "slots", "zoo", "profile", "distill")


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(src, dst.parent), dst)


def share_upstream(base: RunDir, sub: RunDir, stages: tuple[str, ...] = SHARED_STAGES,
                   paths: tuple[Path, ...] | None = None) -> None:
    """Link the base's outputs of ``stages`` (``paths``; by default those of :data:`SHARED_STAGES`)
    into ``sub`` and copy their stage records."""
    if paths is None:
        paths = (base.teacher_dir, base.slots, base.zoo, base.latency, base.scores, base.candidate_weights.parent)
    for path in paths:
        _link(path, sub.root / path.relative_to(base.root))
    for stage in stages:
        record = base.stage_record_path(stage)
        target = sub.stage_record_path(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record, target)


def _infeasible_row(budget: float, run: RunDir, error: InfeasibleBudgetError) -> dict:
    """The row of a budget fraction that no selection reaches: why, and the smallest latency reachable."""
    return {"budget": budget, "run_dir": str(run.root), "infeasible": str(error),
            "budget_ms": error.budget_ms, "min_latency_ms": error.min_latency_ms}


def run_budget_series(
    recipe: Recipe,
    root: Path,
    budgets: list[float],
    on_event: Callable[[str, str, dict], None] | None = None,
    make_tracker: Callable[[Recipe, RunDir], Tracker] | None = None,
    allow_plugins: bool = False,
    seed: int | None = None,
) -> list[dict]:
    """Run the pipeline at each budget fraction; return one row per budget and write
    ``sweep.json`` and ``sweep.png`` in ``root``. ``seed`` seeds distillation and fine-tuning
    (:class:`Context`; default ``recipe.seed``)."""
    base = RunDir(root)
    base_ctx = Context(recipe, base, allow_plugins=allow_plugins, seed=seed)
    for stage in ("profile", "distill"):
        run_stages(base_ctx, stage, on_event=on_event)
    rows, points = [], []
    for budget in budgets:
        sub = RunDir(base.root / f"budget-{budget:g}")
        share_upstream(base, sub)
        r = copy.deepcopy(recipe)
        r.search.budget, r.search.budget_ms = budget, None
        r.name = f"{recipe.name}-budget-{budget:g}"
        tracker = make_tracker(r, sub) if make_tracker else None
        try:
            run_stages(Context(r, sub, allow_plugins=allow_plugins, seed=seed), "report", on_event=on_event, tracker=tracker)
        except InfeasibleBudgetError as e:
            rows.append(_infeasible_row(budget, sub, e))
            continue
        finally:
            if tracker is not None:
                tracker.finish()
        report = read_json(sub.report_json)
        rows.append(
            {
                "budget": budget,
                "run_dir": str(sub.root),
                "accuracy": report["student"]["accuracy"],
                "latency_ms": report["student"]["latency_ms"],
                "predicted_latency_ms": report["student"]["predicted_latency_ms"],
                "teacher_latency_ms": report["teacher"]["latency_ms"],
                "teacher_accuracy": report["teacher"]["accuracy"],
                "within_budget": report["within_budget"],
                "selection": report["selection"],
            }
        )
        pts = report_points(report, label=f"{budget:g}x")
        points += pts[1:] if points else pts
    write_json(base.root / "sweep.json", rows)
    if points:
        plot_pareto(points, base.root / "sweep.png", f"{recipe.name}: students at {len(points) - 1} budgets")
    return rows
