"""``hant sweep``: a series of latency budgets over one teacher, as grouped W&B runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Recipe, load_recipe
from ..errors import ConfigError
from ..pipeline import RunDir
from ..pipeline.budget_series import run_budget_series
from ..tracking import MODES, Tracker
from .pipeline import apply_overrides, print_event, add_plugin_argument


def _budgets(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--budgets takes comma-separated fractions such as 0.3,0.5,0.7, not {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError("--budgets needs at least one positive fraction of the teacher's latency")
    return values


def cmd_sweep(args: argparse.Namespace) -> int:
    recipe = apply_overrides(load_recipe(args.recipe), args)
    root = Path(args.run_dir or Path("runs") / f"{recipe.name}-sweep")
    group = recipe.wandb.group or f"{recipe.name}-sweep"

    def make_tracker(r: Recipe, run: RunDir) -> Tracker:
        w = r.wandb
        return Tracker(w.mode, run.root, r.to_dict(), w.project, w.entity, r.name, group, w.tags)

    rows = run_budget_series(recipe, root, _budgets(args.budgets), print_event, make_tracker, args.allow_plugins)
    print()
    print(f"{'budget':>8} {'accuracy':>9} {'latency ms':>11} {'predicted':>10}  within")
    for r in rows:
        if "infeasible" in r:
            print(f"{r['budget']:>8g}  unreachable: {r['infeasible']}")
            continue
        print(
            f"{r['budget']:>8g} {r['accuracy']:>8.2f}% {r['latency_ms']:>11.3f} {r['predicted_latency_ms']:>10.3f}  "
            f"{'yes' if r['within_budget'] else 'NO'}"
        )
    reached = [r for r in rows if "infeasible" not in r]
    if not reached:
        print(f"no budget was reachable; {root / 'sweep.json'}", file=sys.stderr)
        return 1
    print(f"teacher: {reached[0]['teacher_accuracy']:.2f}% at {reached[0]['teacher_latency_ms']:.3f} ms; "
          f"{root / 'sweep.json'}, {root / 'sweep.png'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a recipe at several latency budgets, sharing the teacher and the zoo")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--budgets", default="0.3,0.4,0.5,0.6,0.7", help="comma-separated fractions of the teacher's latency")
    p.add_argument("--run-dir", help="base directory (default runs/<name>-sweep)")
    p.add_argument("--wandb", choices=MODES, help="W&B mode of the grouped runs")
    p.add_argument("--families", help="comma-separated candidate families to keep from the recipe's zoo")
    add_plugin_argument(p)
    p.set_defaults(func=cmd_sweep)
