"""``hant run`` and the per-stage subcommands over a run directory."""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from ..config import Recipe, check_fields, load_recipe, recipe_from_dict, select_target
from ..distributed import is_main
from ..errors import ConfigError, RunDirError
from ..io import read_json
from ..pipeline import STAGE_ORDER, Context, RunDir
from ..pipeline.dryrun import DryRunReport, dry_run
from ..pipeline.runner import STAGES, Stage
from ..pipeline.tracked import run_tracked_stages
from ..tracking import MODES, resolve_mode

DATA_HELP = "data.root: an ImageFolder with train/ and val/, or a fashion_mnist recipe's IDX directory"
STAGE_HELP = {
    "teacher": "train the teacher (or load its checkpoint) and record its accuracy",
    "slots": "find the teacher's replaceable blocks",
    "zoo": "list every slot's candidate operations",
    "profile": "measure every candidate's latency on the target",
    "distill": "phase 1: layer-wise distillation and scoring of every candidate",
    "search": "phase 2: integer program under the latency budget",
    "finetune": "phase 3: assemble the student and fine-tune it with knowledge distillation",
    "report": "measure teacher and student end to end and write report.json / report.md",
}


def apply_overrides(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    """The recipe with the command line's overrides (budget, target, families, W&B mode, ...) applied."""
    if getattr(args, "budget", None) is not None:
        if not 0 < args.budget:
            raise ConfigError("--budget is a fraction of the teacher's latency and must be positive, e.g. 0.5")
        recipe.search.budget = args.budget
        recipe.search.budget_ms = None
    if getattr(args, "wandb", None) is not None:
        resolve_mode(args.wandb)
        recipe.wandb.mode = args.wandb
    if getattr(args, "target", None):
        select_target(recipe, args.target)
    if getattr(args, "families", None):
        names = [n.strip() for n in args.families.split(",") if n.strip()]
        recipe.zoo.families = {n: recipe.zoo.families.get(n, {}) for n in names}
    if getattr(args, "data", None):
        if recipe.data.dataset != "fashion_mnist":
            recipe.data.dataset = "imagefolder"
        recipe.data.root = args.data
    check_fields(recipe)
    return recipe


def recipe_for_run_dir(run: RunDir, recipe_file: str | None) -> Recipe:
    """The recipe a stage command runs a run directory with: ``recipe_file`` if given, else the
    directory's own ``recipe.json``."""
    if recipe_file:
        return load_recipe(recipe_file)
    if not run.recipe.is_file():
        raise RunDirError(f"{run.root} holds no recipe.json; pass --recipe FILE (or start with `hant run RECIPE`)")
    return recipe_from_dict(read_json(run.recipe))


def print_event(stage: str, event: str, info: dict) -> None:
    """Print one stage event (skipped, started, finished with its summary) on the main process."""
    if not is_main():
        return
    if event == "skipped":
        print(f"[{stage}] up to date, skipped", flush=True)
    elif event == "damaged":
        print(f"[{stage}] {info['reason']}; running it again", flush=True)
    elif event == "started":
        print(f"[{stage}] running ...", flush=True)
    else:
        details = ", ".join(f"{k}={_fmt(v)}" for k, v in info.items() if k != "seconds" and not isinstance(v, (list, dict)))
        print(f"[{stage}] done in {info['seconds']:.1f} s" + (f": {details}" if details else ""), flush=True)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def print_summary(run: RunDir) -> None:
    """The closing summary of a full run, from its report.json (printed by rank 0 only)."""
    if not is_main():
        return
    r = read_json(run.report_json)
    t, s = r["teacher"], r["student"]
    print()
    print(f"Run {run.root}  (target {r['target']['device']}/{r['target']['backend']}, batch {r['target']['batch_size']})")
    print(f"  teacher  accuracy {t['accuracy']:6.2f}%   latency {t['latency_ms']:8.3f} ms")
    print(
        f"  student  accuracy {s['accuracy']:6.2f}%   latency {s['latency_ms']:8.3f} ms "
        f"(predicted {s['predicted_latency_ms']:.3f} ms, {s['speedup']:.2f}x faster)"
    )
    verdict = "within" if r["within_budget"] else "OVER"
    print(f"  budget   {r['budget_ms']:.3f} ms ({r['budget_fraction']:.2f} x teacher): student is {verdict} budget")
    print(
        f"  search   {r['search']['backend']} {r['search']['status']} in {r['search']['solve_seconds'] * 1000:.1f} ms, "
        f"{s['changed_slots']}/{len(r['selection'])} slots changed"
    )
    print(f"  report   {run.report_md}")


def run_tracked(recipe: Recipe, run: RunDir, upto: str, force: bool, allow_plugins: bool = False,
                pipeline: Mapping[str, Stage] = STAGES) -> None:
    """Run the stages of ``pipeline`` up to ``upto`` with events printed and W&B tracking as the recipe says."""
    mode = run_tracked_stages(Context(recipe, run, allow_plugins=allow_plugins), upto, force, print_event, pipeline)
    if mode != "off":
        print(f"W&B run logged {mode} under {run.root / 'wandb'}", flush=True)


def print_dry_run(report: DryRunReport) -> None:
    """The dry run's findings, one slot per line."""
    d = report.data
    print(f"model    {report.model}: {report.parameters / 1e6:.2f} M parameters, input {report.input_shape}")
    test = f"{d['test']} test" if d["test"] is not None else "no test split (accuracies are reported on val)"
    print(f"data     {d['dataset']}: {d['classes']} classes, {d['train']} train / {d['val']} val / {test}")
    print(f"slots    {len(report.slots)} slots, {report.candidates} candidates")
    for s in report.slots:
        print(f"  {s['name']:<28} {s['kind']:<18} {str(s['in_shape']):>16} -> {str(s['out_shape']):<16} {s['candidates']:>4}")
    status = "available here" if report.target_available else f"not available here ({report.target_note})"
    print(f"target   {report.target}: {status}")
    if report.prune is not None:
        p = report.prune
        print(f"prune    {p['method']} to {p['budget']:g} x teacher: {p['groups']} prunable channel groups "
              f"({p['streams']} streams), {len(p['frozen'])} kept whole")
        for name, why in p["frozen"].items():
            print(f"  kept whole: {name}: {why}")
    for w in report.warnings:
        print(f"warning  {w}")
    print("dry run OK: the recipe is valid")


def cmd_run(args: argparse.Namespace) -> int:
    recipe = apply_overrides(load_recipe(args.recipe), args)
    if args.dry_run:
        print_dry_run(dry_run(recipe, allow_plugins=args.allow_plugins))
        return 0
    run = RunDir(args.run_dir or Path("runs") / recipe.name)
    run_tracked(recipe, run, "report", args.force, args.allow_plugins)
    print_summary(run)
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    run = RunDir(args.run_dir)
    recipe = apply_overrides(recipe_for_run_dir(run, args.recipe), args)
    run_tracked(recipe, run, args.command, args.force, args.allow_plugins)
    if args.command == "report":
        print_summary(run)
    return 0


def add_stage_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every stage subcommand takes."""
    p.add_argument("--recipe", help="recipe YAML (default: the run directory's recipe.json)")
    p.add_argument("--budget", type=float, help="latency budget as a fraction of the teacher's latency")
    p.add_argument("--force", action="store_true", help="re-run this stage even if up to date")
    p.add_argument("--wandb", choices=MODES, help="W&B mode (default: the recipe's, else auto)")
    p.add_argument("--target", help="use the recipe's named alternative target (see `targets:`)")
    add_plugin_argument(p)


def add_plugin_argument(p: argparse.ArgumentParser) -> None:
    """``--allow-plugins``: without it, a recipe or student that names plugins is refused."""
    p.add_argument(
        "--allow-plugins", action="store_true",
        help="run the code a recipe or student names: zoo.plugins, teacher.factory, data.factory (read it first)",
    )


def register(sub: argparse._SubParsersAction, skip: set[str]) -> None:
    """Add ``run`` and the stage subcommands not named in ``skip`` (those have their own module)."""
    p = sub.add_parser("run", help="run every stage of a recipe (finished stages are skipped)")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--run-dir", help="run directory (default runs/<recipe name>)")
    p.add_argument("--budget", type=float, help="latency budget as a fraction of the teacher's latency")
    p.add_argument("--force", action="store_true", help="re-run the report stage even if up to date")
    p.add_argument("--wandb", choices=MODES, help="W&B mode (default: the recipe's, else auto)")
    p.add_argument("--target", help="use the recipe's named alternative target (see `targets:`)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--families", help="comma-separated candidate families to keep from the recipe's zoo")
    p.add_argument("--dry-run", action="store_true", help="validate recipe, data, model, slots, zoo and target; run nothing")
    add_plugin_argument(p)
    p.set_defaults(func=cmd_run)
    for name in STAGE_ORDER:
        if name in skip:
            continue
        p = sub.add_parser(name, help=STAGE_HELP[name], description=STAGE_HELP[name] + "; runs missing upstream stages first")
        p.add_argument("run_dir", help="run directory")
        add_stage_arguments(p)
        p.set_defaults(func=cmd_stage)
