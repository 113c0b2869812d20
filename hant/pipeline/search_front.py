"""The Pareto front of a run directory: the search solved over a series of budgets, written as
``search_front.json`` and plotted as ``search_front.png``. Needs the profile and distill stages' outputs."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import RunDirError
from ..io import write_json
from ..plots import plot_front
from ..search.sweep import sweep
from .context import Context
from .stages import latency_table, selection_problem, reference_teacher_ms

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = tuple(round(0.30 + 0.05 * i, 2) for i in range(15))
"""Budgets as fractions of the teacher's profiled latency: 0.30, 0.35, ..., 1.00."""


def front_paths(ctx: Context) -> tuple[Path, Path]:
    return ctx.run.root / "search_front.json", ctx.run.root / "search_front.png"


def sweep_run(
    ctx: Context,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    backend: str | None = None,
    time_limit_s: float | None = None,
    max_changed: int | None = None,
) -> dict:
    """Solve the run's selection problem at each budget fraction; write and return the front."""
    for path, stage in ((ctx.run.latency, "profile"), (ctx.run.scores, "distill")):
        if not path.is_file():
            raise RunDirError(f"{ctx.run.root} has no {path.name}; run `hant {stage} {ctx.run.root}` first")
    cfg = ctx.recipe.search
    table = latency_table(ctx)
    teacher_ms = reference_teacher_ms(table)
    problem = selection_problem(ctx, table, teacher_ms)
    if max_changed is not None:
        problem = dataclasses.replace(problem, max_changed=max_changed)
    backend = backend or cfg.backend
    points = sweep(
        problem,
        [f * teacher_ms for f in fractions],
        backend=backend,
        time_limit_s=time_limit_s or cfg.time_limit_s,
    )
    front = {
        "teacher_ms": teacher_ms,
        "fixed_ms": problem.fixed_latency_ms,
        "backend": backend,
        "max_changed": problem.max_changed,
        "points": [p.to_dict(teacher_ms) for p in points],
    }
    json_path, png_path = front_paths(ctx)
    write_json(json_path, front)
    plot_front(front, png_path)
    log.info("wrote %s and %s", json_path, png_path)
    return front
