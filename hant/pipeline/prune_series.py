"""``hant prune`` at several methods and budgets over one teacher: the teacher, its slots and the
width lookup table are made once and shared, each (method, budget) pruned, fine-tuned and reported
in a run directory of its own (``<method>-<budget>``)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

from ..config import Recipe
from ..io import read_json
from .budget_series import share_upstream
from .context import Context
from .prune_stages import PRUNE_STAGES
from .rundir import RunDir
from .runner import run_stages

__all__ = ["run_prune_series"]


def run_prune_series(
    recipe: Recipe,
    root: Path,
    methods: list[str],
    budgets: list[float],
    teacher_run: RunDir | None = None,
    on_event: Callable[[str, str, dict], None] | None = None,
    allow_plugins: bool = False,
    seed: int | None = None,
) -> list[dict]:
    """Prune at each method and budget fraction; one row per run (method, budget, run directory and
    the report's accuracy and latencies). ``teacher_run``, when given, lends its teacher and slots;
    ``seed`` seeds pruning and fine-tuning (:class:`Context`; default ``recipe.seed``)."""
    base = RunDir(root)
    if teacher_run is not None:
        share_upstream(teacher_run, base, ("teacher", "slots"), (teacher_run.teacher_dir, teacher_run.slots))
    run_stages(Context(recipe, base, allow_plugins=allow_plugins), "prune-profile", on_event=on_event, pipeline=PRUNE_STAGES)
    rows = []
    for method in methods:
        for budget in budgets:
            sub = RunDir(base.root / f"{method}-{budget:g}")
            share_upstream(base, sub, ("teacher", "slots", "prune-profile"), (base.teacher_dir, base.slots, base.prune_latency))
            r = copy.deepcopy(recipe)
            r.prune.method, r.search.budget, r.search.budget_ms = method, budget, None
            r.name = f"{recipe.name}-{method}-{budget:g}"
            run_stages(Context(r, sub, allow_plugins=allow_plugins, seed=seed), "report", on_event=on_event,
                       pipeline=PRUNE_STAGES)
            report = read_json(sub.report_json)
            rows.append({
                "method": method,
                "budget": budget,
                "run_dir": str(sub.root),
                "accuracy": report["student"]["accuracy"],
                "latency_ms": report["student"]["latency_ms"],
                "predicted_latency_ms": report["student"]["predicted_latency_ms"],
                "within_budget": report["within_budget"],
                "prune": read_json(sub.prune_result),
            })
    return rows
