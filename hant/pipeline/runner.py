"""Run stages in order, skipping those whose outputs exist and whose inputs are unchanged.

A stage's fingerprint hashes the part of the recipe it reads and the content of the files its
upstream stages wrote; a stage is skipped when its outputs exist and the fingerprint matches
the one recorded when it last finished, and its outputs pass the stage's check (they parse and
are complete: ``outputs.py``). A teacher or data given as Python objects (``hant.optimize``, the
recipe's factories) enter as hashes of their content (``Context.teacher_inputs``, ``data_inputs``). So a killed run resumes, a changed setting re-runs exactly the
stages it affects, and a damaged output is redone rather than trusted.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..distributed import barrier, is_main
from ..errors import HantError
from ..io import hash_file, hash_obj, write_json
from ..latency import device_fingerprint, fingerprint_id
from ..tracking import Tracker
from . import outputs, stages
from .calibration_data import run_precisions
from .context import Context
from .report import log_report
from .rundir import RunDir
from .streams import uses_stream_widths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: what it depends on and writes, and the function that does it."""

    name: str
    needs: tuple[str, ...]
    config: Callable[[Context], object]
    outputs: Callable[[RunDir], list[Path]]
    fn: Callable[..., dict]
    check: Callable[[RunDir], None]
    """Raises a ``HantError`` naming the first output that does not parse or is incomplete."""


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage(
            "teacher",
            (),
            lambda c: [c.recipe.seed, c.recipe.data, c.recipe.teacher, *c.teacher_inputs, *c.data_inputs,
                       *(["streams reordered", c.recipe.slots] if uses_stream_widths(c.recipe) else [])],
            lambda r: [r.teacher_weights, r.teacher_meta],
            stages.stage_teacher,
            outputs.check_teacher,
        ),
        Stage("slots", ("teacher",), lambda c: [c.recipe.slots, c.recipe.data.image_size, *c.data_inputs], lambda r: [r.slots], stages.stage_slots, outputs.check_slots),
        Stage("zoo", ("slots",), lambda c: [c.recipe.zoo], lambda r: [r.zoo], stages.stage_zoo, outputs.check_zoo),
        Stage(
            "profile",
            ("zoo",),
            lambda c: [c.recipe.target, c.recipe.profile, fingerprint_id(device_fingerprint(c.recipe.target))],
            lambda r: [r.latency],
            stages.stage_profile,
            outputs.check_profile,
        ),
        Stage(
            "distill",
            ("teacher", "zoo"),
            lambda c: [c.seed, c.recipe.data, c.recipe.distill, *c.data_inputs, *scoring_runtime(c),
                       *(["stream widths scored once, after a linear adaptation"] if uses_stream_widths(c.recipe) else [])],
            lambda r: [r.scores],
            stages.stage_distill,
            outputs.check_distill,
        ),
        Stage("search", ("profile", "distill"), lambda c: [c.recipe.search], lambda r: [r.selection], stages.stage_search, outputs.check_search),
        Stage(
            "finetune",
            ("search",),
            lambda c: [c.seed, c.recipe.data, c.recipe.finetune, *c.data_inputs],
            lambda r: [r.student_dir / "arch.json", r.student_dir / "weights.safetensors", r.student_metrics],
            stages.stage_finetune,
            outputs.check_finetune,
        ),
        Stage(
            "report",
            ("profile", "distill", "search", "finetune"),  # it reads the table, scores and selection too
            lambda c: [c.recipe.target],
            lambda r: [r.report_json, r.report_md],
            stages.stage_report,
            outputs.check_report,
        ),
    ]
}
STAGE_ORDER = list(STAGES)
REPORT_STAGE = "report"
"""The last stage of every pipeline variant: it writes ``report.json`` and ``report.md``."""


def scoring_runtime(ctx: Context) -> list:
    """What the distill stage's scores depend on besides data and settings: the target's runtime and
    precisions where some candidates are scored as that runtime computes them (any precision but float32)."""
    precisions = run_precisions(ctx)
    if all(p == "float32" for p in precisions):
        return []
    t = ctx.recipe.target
    return [t.device, t.backend, precisions]
DISTRIBUTED_STAGES = ("teacher", "distill", "finetune")
"""Stages that every torchrun process runs together (DDP); rank 0 alone runs the others."""


def _upstream(name: str, pipeline: Mapping[str, Stage]) -> list[str]:
    """``name`` and every stage it depends on, in pipeline order."""
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n not in seen:
            seen.add(n)
            for dep in pipeline[n].needs:
                visit(dep)

    visit(name)
    return [n for n in pipeline if n in seen]


def fingerprint(ctx: Context, stage: Stage, pipeline: Mapping[str, Stage] = STAGES) -> str:
    """Hash of the recipe part a stage reads and of its upstream stages' output files."""
    inputs = {dep: [hash_file(p) for p in pipeline[dep].outputs(ctx.run)] for dep in stage.needs}
    return hash_obj({"config": stage.config(ctx), "inputs": inputs})


def is_current(ctx: Context, stage: Stage, on_damage: Callable[[str], None] | None = None,
               pipeline: Mapping[str, Stage] = STAGES) -> bool:
    """Whether a stage's outputs exist, are whole, and were made from its present inputs.

    A damaged output (or stage record) makes the stage not current; ``on_damage`` hears why.
    """
    try:
        record = ctx.run.stage_record(stage.name)
        if record is None or not all(p.exists() for p in stage.outputs(ctx.run)):
            return False
        stage.check(ctx.run)
    except HantError as e:
        log.info("%s: %s; running the stage again", stage.name, e)
        if on_damage is not None:
            on_damage(str(e))
        return False
    return record.get("fingerprint") == fingerprint(ctx, stage, pipeline)


def _reporter(emit: Callable[[str, str, dict], None], name: str) -> Callable[[str], None]:
    return lambda why: emit(name, "damaged", {"reason": why})


def run_stages(
    ctx: Context,
    upto: str,
    force: bool = False,
    on_event: Callable[[str, str, dict], None] | None = None,
    tracker: Tracker | None = None,
    pipeline: Mapping[str, Stage] = STAGES,
) -> dict[str, dict]:
    """Run ``upto`` and every stage it needs, skipping up-to-date ones (``force`` re-runs ``upto``).

    ``pipeline`` is the stage table: :data:`STAGES` (``hant run``) or a variant over the same run
    directory (``hant.pipeline.prune_stages.PRUNE_STAGES``, ``hant prune``).

    ``on_event(stage, "skipped" | "damaged" | "started" | "finished", info)`` reports progress to a
    caller ("damaged": an output failed its check, ``info`` is the reason; the stage is redone);
    a ``tracker`` receives each stage's numbers and, after the report, its tables and plots.
    Returns each stage's summary (from its record when skipped).
    """
    emit = on_event or (lambda *a: None)
    summaries: dict[str, dict] = {}
    if is_main():
        write_json(ctx.run.recipe, ctx.recipe.to_dict())
    for name in _upstream(upto, pipeline):
        stage = pipeline[name]
        if not (force and name == upto) and is_current(ctx, stage, _reporter(emit, name), pipeline):
            summaries[name] = ctx.run.stage_record(name).get("summary", {})
            emit(name, "skipped", summaries[name])
            continue
        emit(name, "started", {})
        start = time.perf_counter()
        if name in DISTRIBUTED_STAGES or is_main():
            summary = stage.fn(ctx)
        barrier()  # under torchrun, the other processes wait for rank 0's single-process stages
        if not (name in DISTRIBUTED_STAGES or is_main()):
            summary = {}
        elapsed = time.perf_counter() - start
        if is_main():
            ctx.run.write_stage_record(
                name,
                {"fingerprint": fingerprint(ctx, stage, pipeline), "seconds": elapsed, "finished_at": time.time(), "summary": summary},
            )
        barrier()
        summaries[name] = summary
        emit(name, "finished", {"seconds": elapsed, **summary})
        if tracker is not None:
            tracker.log_stage(name, {"seconds": elapsed, **summary})
            if name == REPORT_STAGE:
                log_report(tracker, ctx.run)
    return summaries
