"""``hant prune``: latency-aware channel pruning of the recipe's teacher by HALP or SP-LAMP."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..config import load_recipe
from ..distill.trainer import evaluate, train_classifier
from ..io import write_json
from ..latency import measure
from ..pipeline import RunDir
from ..pipeline.context import Context
from ..pipeline.runner import run_stages
from ..prune.run import METHODS, build_space, prune_to_budget
from ..prune.save import save_pruned
from .pipeline import apply_overrides, print_event, add_plugin_argument


def cmd_prune(args: argparse.Namespace) -> int:
    recipe = apply_overrides(load_recipe(args.recipe), args)
    if args.method:
        recipe.prune.method = args.method
    run = RunDir(Path(args.run_dir or Path("runs") / recipe.name))
    ctx = Context(recipe, run, allow_plugins=args.allow_plugins)
    run_stages(ctx, "slots", on_event=print_event)
    teacher = ctx.teacher
    space = build_space(recipe, teacher, ctx.slots, ctx.input_shape)
    fraction = recipe.search.budget
    result = prune_to_budget(recipe, teacher, space, fraction, ctx.train_loader(seed_offset=3), ctx.augment())
    cfg = recipe.finetune
    model = result.model.requires_grad_(True)
    torch.manual_seed(recipe.seed)
    train_classifier(model, ctx.train_loader(seed_offset=2), ctx.eval_loader("val"), cfg, teacher=teacher,
                     kd_temperature=cfg.kd_temperature, kd_alpha=cfg.kd_alpha, augment=ctx.augment(),
                     desc="finetune", seed=recipe.seed + 2)
    model.eval()
    stats = measure([("teacher", teacher, ctx.input_shape), ("student", model, ctx.input_shape)], recipe.target,
                    rel_precision=recipe.profile.rel_precision, time_budget_s=recipe.profile.time_budget_s)
    summary = {
        "method": recipe.prune.method,
        "budget": fraction,
        "teacher": {"accuracy": evaluate(teacher, ctx.eval_loader("test")), "latency_ms": stats["teacher"].median_ms},
        "student": {"accuracy": evaluate(model, ctx.eval_loader("test")), "latency_ms": stats["student"].median_ms,
                    "predicted_latency_ms": result.predicted_ms},
        "counts": result.counts,
        "fit_rounds": result.fit_rounds,
        "steps": result.history,
    }
    out = run.root / f"pruned-{recipe.prune.method}"
    save_pruned(model, out, ctx.model_desc, [s.path for s in ctx.slots], result.counts, ctx.input_shape, {"summary": summary})
    write_json(out / "summary.json", summary)
    t, s = summary["teacher"], summary["student"]
    print(f"teacher: {t['accuracy']:.2f}% at {t['latency_ms']:.3f} ms")
    print(f"{recipe.prune.method}: {s['accuracy']:.2f}% at {s['latency_ms']:.3f} ms "
          f"({s['latency_ms'] / t['latency_ms']:.3f}x, budget {fraction:g}x); saved to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="latency-aware channel pruning (HALP or SP-LAMP) of the recipe's teacher")
    p.add_argument("recipe", help="recipe YAML file (its prune section)")
    p.add_argument("--run-dir", help="run directory (default runs/<recipe name>)")
    p.add_argument("--budget", type=float, help="latency budget as a fraction of the teacher's latency")
    p.add_argument("--method", choices=METHODS, help="override prune.method")
    p.add_argument("--data", help="ImageFolder root with train/ and val/ (overrides data.root)")
    p.add_argument("--target", help="use the recipe's named alternative target (see `targets:`)")
    add_plugin_argument(p)
    p.set_defaults(func=cmd_prune)
