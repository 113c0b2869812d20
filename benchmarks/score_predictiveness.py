"""How well each phase-1 score predicts the accuracy a student reaches after fine-tuning.

The integer program adds per-slot scores and keeps the student with the smallest sum under the
budget, so a score is useful when its sum ranks students of equal latency the way their
fine-tuned accuracy does. For a run directory whose distill stage is done (``scores.json`` holds,
per candidate, its feature-map distillation loss, its swap-in KL divergence from the teacher's
logits and its swap-in accuracy), this draws students where the search picks: at each budget, the
program's answer under each score, then under log-normally perturbed scores, until
``--students-per-budget`` distinct students. Each is assembled from its distilled candidates,
fine-tuned by the recipe's ``finetune`` (KD from the teacher, as ``hant run`` does) and evaluated
on the test split, which nothing here selects on. Reported per score: Spearman and Kendall rank
correlation between its goodness (minus the student's summed score) and test accuracy, within each
budget (students of about the same predicted latency) and their size-weighted mean.

Over candidates (``--candidates N``): N candidates drawn uniformly from all slots each make a
one-swap student (the teacher with only that slot replaced), fine-tuned and tested the same way;
the rank correlation of each score with those accuracies says how well it orders candidates.

Accuracy is torch's float32 numerics of the students (the deployed precision's shift is what
``hant run``'s report measures). The last printed line is a JSON summary; the whole result goes to
``--out``. ``--scores`` restricts which scores' picks are drawn; ``--no-teacher-floor`` turns
``search.teacher_floor`` off, so the same distillation's picks with and without it compare.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/score_predictiveness.py --run RUN_DIR \\
        [--budgets 0.35,0.45,0.55] [--students-per-budget 8] [--candidates 16]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from hant.cli.pipeline import recipe_for_run_dir
from hant.deploy import split_precision, with_precision
from hant.distill.layerwise import CandidateRecord, search_score
from hant.errors import HantError
from hant.io import read_json, write_json
from hant.pipeline.context import Context
from hant.pipeline.rundir import RunDir
from hant.pipeline.stages import build_student, finetune_student, latency_table, reference_teacher_ms, selection_problem
from hant.pipeline.streams import STREAM_PREFIX
from hant.search import Problem, SlotChoices, solve

ROOT = Path(__file__).resolve().parent.parent
SCORED_FIELDS = {"feature_loss": ("nmse", "feature_loss"), "swap_kl": ("swap_kl", "swap_kl"),
                 "swap_error": ("swap_error", "swap_accuracy")}
"""Score name -> (the ``distill.score`` it is, the record field it is computed from)."""


def _value_of(score: str, field: str) -> Callable[[Mapping], float | None]:
    """A record's value under ``distill.score`` ``score`` (lower is better); None where ``field`` is missing."""
    blank = {"slot": "", "key": "", "uid": "", "status": "ok"}  # names the score does not read
    return lambda rec: (None if rec.get(field) is None
                        else search_score(CandidateRecord.from_dict({**blank, **rec}), score))


SCORES: dict[str, Callable[[Mapping], float | None]] = {name: _value_of(*spec) for name, spec in SCORED_FIELDS.items()}
"""Score name -> the value the search would minimise, taken from a candidate's record in ``scores.json``."""


def perturbed(problem: Problem, spread: float, rng: np.random.Generator) -> Problem:
    """``problem`` with every score multiplied by ``exp(N(0, spread))``."""
    slots = tuple(
        SlotChoices(s.name, tuple(dataclasses.replace(c, score=c.score * float(np.exp(rng.normal(0, spread))))
                                  for c in s.candidates))
        for s in problem.slots
    )
    return dataclasses.replace(problem, slots=slots)


def draw_students(ctx: Context, budgets: list[float], per_budget: int, spread: float, seed: int,
                  drawing: list[str] | None = None) -> list[dict]:
    """Distinct selections per budget: each drawing score's own answer first (``drawing``: names of
    :data:`SCORES`, default all), then perturbed answers in turn."""
    drawing = drawing or list(SCORES)
    table = latency_table(ctx)
    teacher_ms = reference_teacher_ms(table)
    rng = np.random.default_rng(seed)
    out = []
    for fraction in budgets:
        budget_ms = fraction * teacher_ms
        problems = {name: selection_problem(ctx, table, budget_ms, SCORES[name]) for name in drawing}
        seen: set[tuple] = set()
        for attempt in range(6 * per_budget):
            if len(seen) == per_budget:
                break
            name = drawing[attempt % len(drawing)]
            problem = problems[name] if attempt < len(drawing) else perturbed(problems[name], spread, rng)
            selection = solve(problem, backend=ctx.recipe.search.backend, time_limit_s=ctx.recipe.search.time_limit_s)
            key = tuple(sorted(selection.choices.items()))
            if key in seen:
                continue
            seen.add(key)
            out.append({"budget": fraction, "drawn_by": name if attempt < len(drawing) else f"{name}, perturbed",
                        "choices": dict(selection.choices), "predicted_ms": selection.predicted_latency_ms})
    return out


def score_sums(ctx: Context, choices: Mapping[str, str]) -> dict[str, float | None]:
    """Per score, the sum over slots of the chosen candidates' values (None where one is missing)."""
    records = read_json(ctx.run.scores)
    default = ctx.recipe.target.dtype
    sums: dict[str, float | None] = {}
    for name, score_of in SCORES.items():
        values = []
        for slot, key in choices.items():
            if slot not in records:  # the program's outside slot carries no score
                continue
            if slot.startswith(STREAM_PREFIX):  # a stream's width: one record per width, in no precision
                values.append(score_of(records[slot][key]))
                continue
            op, precision = split_precision(key, default)
            values.append(score_of(records[slot][with_precision(op, precision, "float32")]))
        sums[name] = None if any(v is None for v in values) else math.fsum(values)
    return sums


def fine_tuned_accuracy(ctx: Context, choices: Mapping[str, str]) -> dict:
    """Assemble the student ``choices`` describes from its distilled candidates, fine-tune it as the
    finetune stage does and return its accuracies."""
    student = build_student(ctx, dict(choices))
    metrics = finetune_student(ctx, student)
    return {k: metrics.get(k) for k in ("assembled_val_accuracy", "finetuned_val_accuracy", "kept", "test_accuracy")}


def rank_agreement(goodness: list[float], accuracy: list[float]) -> dict:
    """Spearman and Kendall correlations (with their p-values) of ``goodness`` with ``accuracy``."""
    if len(goodness) < 3 or len(set(goodness)) < 2 or len(set(accuracy)) < 2:
        return {"n": len(goodness), "spearman": None, "kendall": None}
    rho = stats.spearmanr(goodness, accuracy)
    tau = stats.kendalltau(goodness, accuracy)
    return {"n": len(goodness), "spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "kendall": float(tau.statistic), "kendall_p": float(tau.pvalue)}


def weighted_mean(groups: list[dict], field: str) -> float | None:
    """Size-weighted mean of ``field`` over the groups that have it."""
    pairs = [(g["n"], g[field]) for g in groups if g.get(field) is not None]
    total = sum(n for n, _ in pairs)
    return None if not total else sum(n * v for n, v in pairs) / total


def correlations(rows: list[dict], group_by: str | None) -> dict:
    """Per score: its rank agreement with test accuracy (within groups of ``group_by``, and their mean)."""
    out = {}
    for name in SCORES:
        usable = [r for r in rows if r["scores"][name] is not None]
        keys = sorted({r[group_by] for r in usable}) if group_by else [None]
        groups = {}
        for k in keys:
            members = [r for r in usable if group_by is None or r[group_by] == k]
            goodness = [-r["scores"][name] for r in members]
            groups[str(k)] = rank_agreement(goodness, [r["test_accuracy"] for r in members])
        out[name] = {"groups": groups, "spearman": weighted_mean(list(groups.values()), "spearman"),
                     "kendall": weighted_mean(list(groups.values()), "kendall")}
    return out


def one_swap_choices(ctx: Context, count: int, seed: int) -> list[dict[str, str]]:
    """``count`` selections that each change one slot to a candidate drawn uniformly from all slots'
    scored candidates (``keep`` and failed ones aside), in the target's precision."""
    records = read_json(ctx.run.scores)
    pool = [(slot.name, spec.key) for slot in ctx.slots for spec in ctx.zoo[slot.name]
            if spec.family != "keep" and records[slot.name].get(spec.key, {}).get("status") in ("ok", "exact")]
    picks = random.Random(seed).sample(pool, min(count, len(pool)))
    keep = {slot.name: "keep" for slot in ctx.slots}
    return [{**keep, slot: key} for slot, key in picks]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a run directory whose distill stage is done")
    p.add_argument("--recipe", help="recipe YAML (default: the run directory's recipe.json)")
    p.add_argument("--budgets", default="0.35,0.45,0.55", help="comma-separated fractions of the teacher's latency")
    p.add_argument("--students-per-budget", type=int, default=8)
    p.add_argument("--candidates", type=int, default=16, help="one-swap students for the correlation over candidates")
    p.add_argument("--scores", default=",".join(SCORES), help="comma-separated scores whose picks are drawn")
    p.add_argument("--no-teacher-floor", action="store_true",
                   help="search.teacher_floor off: candidates may be credited with beating the teacher")
    p.add_argument("--score-noise", type=float, default=0.5, help="log-normal spread of the perturbed scores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/score_predictiveness.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        run = RunDir(Path(args.run))
        recipe = recipe_for_run_dir(run, args.recipe)
        if args.no_teacher_floor:
            recipe = dataclasses.replace(recipe, search=dataclasses.replace(recipe.search, teacher_floor=False))
        ctx = Context(recipe, run)
        if not run.scores.is_file():
            raise HantError(f"{run.root} has no {run.scores.name}: run its distill stage first")
        drawing = args.scores.split(",")
        if unknown := sorted(set(drawing) - set(SCORES)):
            raise HantError(f"--scores: unknown {', '.join(unknown)} (known: {', '.join(SCORES)})")
        budgets = [float(b) for b in args.budgets.split(",")]
        students = draw_students(ctx, budgets, args.students_per_budget, args.score_noise, args.seed, drawing)
    except HantError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for i, student in enumerate(students):
        row = {**student, "scores": score_sums(ctx, student["choices"]), **fine_tuned_accuracy(ctx, student["choices"])}
        rows.append(row)
        print(f"student {i + 1}/{len(students)} budget {row['budget']:g} ({row['drawn_by']}): "
              f"test {row['test_accuracy']:.2f} %, scores {json.dumps(row['scores'])}", flush=True)
    swaps = []
    for i, choices in enumerate(one_swap_choices(ctx, args.candidates, args.seed)):
        (slot, key), = [(s, k) for s, k in choices.items() if k != "keep"]
        row = {"slot": slot, "candidate": key, "scores": score_sums(ctx, choices), **fine_tuned_accuracy(ctx, choices)}
        swaps.append(row)
        print(f"one-swap {i + 1}/{args.candidates} {slot} {key}: test {row['test_accuracy']:.2f} %", flush=True)
    result = {
        "run": str(run.root), "recipe": ctx.recipe.name, "budgets": budgets, "score_noise": args.score_noise,
        "drawing_scores": drawing, "teacher_floor": ctx.recipe.search.teacher_floor,
        "finetune": dataclasses.asdict(ctx.recipe.finetune),
        "over_students": correlations(rows, "budget"), "over_candidates": correlations(swaps, None),
        "students": rows, "one_swap": swaps, "total_s": time.perf_counter() - t0,
    }
    write_json(Path(args.out), result)
    summary = {part: {name: {k: result[part][name][k] for k in ("spearman", "kendall")} for name in SCORES}
               for part in ("over_students", "over_candidates")}
    print(f"details: {args.out}; {result['total_s']:.0f} s")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
