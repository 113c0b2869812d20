"""``hant prune``: latency-aware channel pruning of the recipe's teacher by HALP or SP-LAMP, run as
the prune variant of the pipeline (resumable stages over a run directory, W&B, report files)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_recipe
from ..pipeline import RunDir
from ..pipeline.dryrun import dry_run
from ..pipeline.prune_stages import PRUNE_STAGES
from ..pruning.run import METHODS
from .pipeline import DATA_HELP, add_plugin_argument, apply_overrides, print_dry_run, print_summary, run_tracked


def cmd_prune(args: argparse.Namespace) -> int:
    recipe = apply_overrides(load_recipe(args.recipe), args)
    if args.method:
        recipe.prune.method = args.method
    if args.dry_run:
        print_dry_run(dry_run(recipe, allow_plugins=args.allow_plugins, pipeline="prune"))
        return 0
    run = RunDir(Path(args.run_dir or Path("runs") / recipe.name))
    run_tracked(recipe, run, "report", args.force, args.allow_plugins, pipeline=PRUNE_STAGES)
    print_summary(run)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="latency-aware channel pruning (HALP or SP-LAMP) of the recipe's teacher")
    p.add_argument("recipe", help="recipe YAML file (its prune section)")
    p.add_argument("--run-dir", help="run directory (default runs/<recipe name>)")
    p.add_argument("--budget", type=float, help="latency budget as a fraction of the teacher's latency")
    p.add_argument("--method", choices=METHODS, help="override prune.method")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--target", help="use the recipe's named alternative target (see `targets:`)")
    p.add_argument("--wandb", help="W&B mode: auto, off, offline or online (overrides wandb.mode)")
    p.add_argument("--force", action="store_true", help="re-run the last stage even when it is up to date")
    p.add_argument("--dry-run", action="store_true", help="check the recipe and print the plan without running it")
    add_plugin_argument(p)
    p.set_defaults(func=cmd_prune)
