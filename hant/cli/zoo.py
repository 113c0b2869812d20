"""``hant zoo``: the zoo stage of a run directory, or the zoo of any timm model by name.

``hant zoo RUN_DIR`` runs the pipeline's zoo stage. ``hant zoo MODEL`` (a timm model name)
finds the model's slots, lists every family's candidates for each, and with ``--check`` builds
and runs every candidate on its slot's input shape.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..config import load_recipe
from ..errors import ConfigError
from ..models import create_model
from ..ops_zoo import build_zoo, check_zoo, default_families, get_family, load_plugins
from ..pipeline.context import check_plugins_allowed
from ..progress import progress
from ..slots import discover_slots
from .pipeline import STAGE_HELP, add_stage_arguments, cmd_stage

MODEL_ONLY = ("json", "check", "slots", "input_size", "plugin")  # flags of the model mode only


def parse_input_size(text: str) -> tuple[int, int, int] | tuple[int, int]:
    """``224``, ``160x128`` or ``3,224,224`` → (H, W) or (C, H, W)."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) not in (1, 2, 3) or any(s <= 0 for s in sizes):
        raise ConfigError(f"--input-size {text!r} is not a size; write e.g. 224, 160x128 or 3,224,224")
    return (sizes[0], sizes[0]) if len(sizes) == 1 else sizes


def zoo_families(args: argparse.Namespace, recipe_families: dict | None) -> dict[str, dict]:
    """The families to list: ``--families`` names (options from the recipe where it has them),
    else the recipe's, else every registered family with its defaults."""
    names = [n.strip() for item in args.families or [] for n in item.split(",") if n.strip()]
    if names:
        for name in names:
            get_family(name)  # an unknown name is an error that lists the registered ones
        return {name: dict((recipe_families or {}).get(name) or {}) for name in names}
    if recipe_families:
        return dict(recipe_families)
    return default_families()


def model_and_input(name: str, input_size: str | None, kwargs: dict) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """A timm model by name (1000 classes, random weights) and its per-sample input shape."""
    model = create_model(name, 1000, 3, kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    default = tuple(cfg.get("input_size") or (3, 224, 224))
    if input_size is None:
        return model.eval(), default
    size = parse_input_size(input_size)
    shape = size if len(size) == 3 else (default[0], *size)
    if shape[0] != default[0]:
        kwargs = {**kwargs, "in_chans": shape[0]}
    if cfg.get("fixed_input_size") and tuple(shape[1:]) != tuple(default[1:]):
        kwargs = {**kwargs, "img_size": tuple(shape[1:])}
    if kwargs:
        in_chans = kwargs.pop("in_chans", 3)
        model = create_model(name, 1000, in_chans, kwargs)
    return model.eval(), tuple(shape)


def _fmt_shape(shape) -> str:
    return "x".join(str(s) for s in shape)


def cmd_model_zoo(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe) if args.recipe else None
    if recipe is not None:
        check_plugins_allowed(recipe, args.allow_plugins)
    plugins = [*(recipe.zoo.plugins if recipe else []), *(args.plugin or [])]
    if plugins:
        load_plugins(plugins)
    kwargs = dict(recipe.teacher.kwargs) if recipe and recipe.teacher.model == args.model_or_run else {}
    torch.manual_seed(0)
    model, input_shape = model_and_input(args.model_or_run, args.input_size, kwargs)
    patterns = list(args.slots or []) or (list(recipe.slots.patterns) if recipe else []) or None
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    slots = discover_slots(model, example, patterns)
    zoo = build_zoo(model, slots, zoo_families(args, recipe.zoo.families if recipe else None))
    counts = [len(zoo[s.name]) for s in slots]
    result = {
        "model": args.model_or_run,
        "input_size": list(input_shape),
        "slots": [
            {
                "name": s.name,
                "in_shape": list(s.in_shape),
                "out_shape": list(s.out_shape),
                "kind": s.kind,
                "candidates": n,
            }
            for s, n in zip(slots, counts)
        ],
        "candidates": sum(counts),
    }
    if not args.json:
        _print_table(result, counts)
    report = None
    if args.check:
        bar = progress(range(sum(counts)), desc="check", unit="candidate")
        ticks = iter(bar)
        report = check_zoo(model, slots, zoo, on_candidate=lambda *_: next(ticks, None), threads=args.threads)
        for _ in ticks:  # close the bar
            pass
        result["check"] = {
            "candidates": report.candidates,
            "seconds": round(report.seconds, 2),
            "failures": [{"slot": f.slot, "key": f.key, "error": f.error} for f in report.failures],
        }
    if args.json:
        print(json.dumps(result, indent=2))
    elif report is not None:
        for f in report.failures:
            print(f"FAIL {f.slot} {f.key}: {f.error}")
        print(
            f"check: built and ran {report.candidates} candidates in {report.seconds:.1f} s, "
            f"{len(report.failures)} failed"
        )
    return 1 if report is not None and not report.ok else 0


def _print_table(result: dict, counts: list[int]) -> None:
    rows = [
        (s["name"], s["kind"], _fmt_shape(s["in_shape"]), _fmt_shape(s["out_shape"]), str(s["candidates"]))
        for s in result["slots"]
    ]
    header = ("slot", "kind", "in", "out", "candidates")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(
        f"{result['model']}: {len(counts)} slots at input {_fmt_shape(result['input_size'])}, "
        f"{sum(counts)} candidates ({min(counts)} to {max(counts)} per slot)",
        flush=True,
    )


def cmd_zoo(args: argparse.Namespace) -> int:
    """A run directory runs the zoo stage; anything else is a timm model name."""
    if Path(args.model_or_run).is_dir():
        used = [f"--{name.replace('_', '-')}" for name in MODEL_ONLY if getattr(args, name)]
        if used:
            raise ConfigError(
                f"{' '.join(used)} apply to a timm model name, not to run directory {args.model_or_run}; "
                "set slots and families in its recipe instead"
            )
        args.run_dir = args.model_or_run
        args.families = ",".join(args.families) if args.families else None  # the stage's family filter
        return cmd_stage(args)
    if "/" in args.model_or_run or args.model_or_run.startswith("."):
        raise ConfigError(f"run directory {args.model_or_run} does not exist; pass an existing one or a timm model name")
    return cmd_model_zoo(args)


def register(sub: argparse._SubParsersAction) -> None:
    help_text = STAGE_HELP["zoo"] + "; or, for a timm model name, list and check its zoo"
    description = (
        "On a run directory, run the pipeline's zoo stage. On a timm model name (random weights), list its "
        "slots and each slot's candidates; --check builds every candidate and runs it on its slot's input shape."
    )
    p = sub.add_parser("zoo", help=help_text, description=description)
    p.add_argument(
        "model_or_run", metavar="RUN_DIR|MODEL", help="run directory, or a timm model name (e.g. efficientnet_b0)"
    )
    add_stage_arguments(p)
    p.add_argument("--json", action="store_true", help="print the slots and candidate counts as JSON")
    p.add_argument("--check", action="store_true", help="build and run every candidate; exit 1 if any fails")
    p.add_argument(
        "--families", action="append", metavar="NAMES", help="comma-separated families (default: all registered)"
    )
    p.add_argument("--slots", action="append", metavar="PATTERN", help="name slots by module-path pattern (repeatable)")
    p.add_argument(
        "--input-size", metavar="SIZE", help="224, HxW or C,H,W (default: the model's pretrained_cfg input size)"
    )
    p.add_argument(
        "--plugin", action="append", metavar="FILE", help="Python file (or module) registering your own families"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads for --check (default 1: fastest at batch 1)")
    p.set_defaults(func=cmd_zoo)
