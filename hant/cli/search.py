"""``hant search``: the search stage of a run directory, its Pareto front, or a standalone problem.

``hant search RUN_DIR`` runs the pipeline's search stage (``--backend``, ``--budget-ms`` and
``--time-limit`` override the recipe). ``hant search RUN_DIR --sweep [--budgets 0.3,0.4,...]``
solves a series of budgets (fractions of the teacher's latency) and writes ``search_front.json`` and
``search_front.png``. ``hant search --problem FILE.json`` solves a problem given as JSON and prints the
answer as JSON; with ``--sweep`` the budgets are fractions of the all-first-candidate latency.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..errors import ConfigError, SearchError
from ..pipeline import Context, RunDir
from ..pipeline.search_front import DEFAULT_FRACTIONS, front_paths, sweep_run
from ..search import BACKENDS, Problem, problem_from_dict, solve
from ..search.sweep import keep_latency_ms, sweep
from .pipeline import (
    STAGE_HELP,
    apply_overrides,
    recipe_for_run_dir,
    run_tracked,
    add_stage_arguments,
    cmd_stage,
    print_summary,
)

_SOLVER_FLAGS = ("backend", "budget_ms", "time_limit")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help=STAGE_HELP["search"], description=__doc__.split("\n\n", 1)[1].replace("``", ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="run directory (omit with --problem)")
    add_stage_arguments(p)
    p.add_argument("--problem", metavar="FILE", help="solve the selection problem in this JSON file instead")
    p.add_argument("--budget-ms", type=float, help="latency budget in milliseconds (overrides the recipe or file)")
    p.add_argument("--backend", choices=BACKENDS, help="solver backend (default: the recipe's, else cpsat)")
    p.add_argument("--time-limit", type=float, metavar="S", help="solver time limit in seconds")
    p.add_argument("--max-changed", type=int, metavar="K", help="change at most K slots (problem and sweep)")
    p.add_argument("--sweep", action="store_true", help="solve a series of budgets and write the Pareto front")
    p.add_argument("--budgets", metavar="LIST",
                   help="sweep budgets as fractions, e.g. 0.3,0.4,0.5 (default 0.30 to 1.00 in steps of 0.05)")
    p.set_defaults(func=cmd_search)


def parse_fractions(text: str | None) -> tuple[float, ...]:
    """``0.3,0.4`` → (0.3, 0.4); the default series when ``text`` is None."""
    if text is None:
        return DEFAULT_FRACTIONS
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or any(not 0 < v < float("inf") for v in values):
        raise ConfigError(f"--budgets {text!r} is not a list of positive fractions; write e.g. 0.3,0.4,0.5")
    return values


def _load_problem(path: str) -> Problem:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SearchError(f"cannot read the problem file {path} ({exc.strerror}); check the path") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SearchError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return problem_from_dict(data)


def answer_dict(selection) -> dict:
    """The printed answer to a standalone problem."""
    out = {
        "status": selection.status,
        "objective": selection.total_score,
        "latency_ms": selection.predicted_latency_ms,
        "selection": selection.choices,
        "solve_seconds": selection.solve_seconds,
        "gap": selection.gap,
        "lower_bound": selection.extras.get("lower_bound"),
        "budget_ms": selection.budget_ms,
        "backend": selection.backend,
    }
    totals = selection.extras.get("totals", {})
    if len(totals) > 1:
        out["totals"] = totals
    return out


def _cmd_problem(args: argparse.Namespace) -> int:
    if args.run_dir:
        raise ConfigError("give either a run directory or --problem FILE, not both")
    if args.budget is not None:
        raise ConfigError("--budget is a fraction of a run's teacher latency; with --problem use --budget-ms")
    problem = _load_problem(args.problem)
    if args.budget_ms is not None:
        problem = dataclasses.replace(problem, budget_ms=args.budget_ms)
    if args.max_changed is not None:
        problem = dataclasses.replace(problem, max_changed=args.max_changed)
    backend, limit = args.backend or "cpsat", args.time_limit or 10.0
    if args.sweep:
        reference = keep_latency_ms(problem)
        points = sweep(problem, [f * reference for f in parse_fractions(args.budgets)], backend=backend, time_limit_s=limit)
        print(json.dumps({"reference_latency_ms": reference, "points": [p.to_dict(reference) for p in points]}, indent=2))
        return 0
    print(json.dumps(answer_dict(solve(problem, backend=backend, time_limit_s=limit)), indent=2))
    return 0


def _print_front(front: dict, paths: tuple[Path, Path]) -> None:
    print(f"budget  budget_ms  predicted_ms  total_score  changed  status      solve_ms   (teacher {front['teacher_ms']:.3f} ms)")
    for p in front["points"]:
        if p["status"] == "infeasible":
            print(f"{p['budget_fraction']:6.2f}  {p['budget_ms']:9.3f}  infeasible: smallest achievable {p['min_latency_ms']:.3f} ms")
            continue
        print(
            f"{p['budget_fraction']:6.2f}  {p['budget_ms']:9.3f}  {p['predicted_latency_ms']:12.3f}  {p['total_score']:11.5g}"
            f"  {p['changed_slots']:7d}  {p['status']:<10}  {p['solve_seconds'] * 1000:8.1f}"
        )
    print(f"wrote {paths[0]} and {paths[1]}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    run = RunDir(args.run_dir)
    recipe = apply_overrides(recipe_for_run_dir(run, args.recipe), args)
    ctx = Context(recipe, run, allow_plugins=args.allow_plugins)
    front = sweep_run(
        ctx, parse_fractions(args.budgets), backend=args.backend, time_limit_s=args.time_limit, max_changed=args.max_changed
    )
    _print_front(front, front_paths(ctx))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if args.problem:
        return _cmd_problem(args)
    if not args.run_dir:
        raise ConfigError("give a run directory, or --problem FILE.json")
    if args.sweep:
        return _cmd_sweep(args)
    if args.budgets is not None or args.max_changed is not None:
        raise ConfigError("--budgets and --max-changed go with --sweep or --problem")
    if all(getattr(args, f) is None for f in _SOLVER_FLAGS) and args.budget is None:
        return cmd_stage(args)
    run = RunDir(args.run_dir)
    recipe = apply_overrides(recipe_for_run_dir(run, args.recipe), args)
    if args.backend is not None:
        recipe.search.backend = args.backend
    if args.budget_ms is not None:
        recipe.search.budget_ms = args.budget_ms
    if args.time_limit is not None:
        recipe.search.time_limit_s = args.time_limit
    # a new budget or solver setting changes the selection, so the student and report follow it
    run_tracked(recipe, run, "report", args.force, args.allow_plugins)
    print_summary(run)
    return 0
