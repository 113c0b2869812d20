"""``hant profile``: the profile stage of a run directory, or the latency table of a timm model by name.

``hant profile MODEL`` (random weights) measures every candidate of the model's zoo, the part
outside the slots, the model and a few random students on the given target, and writes the table
(``--out``, default ``latency-<model>.json``); entries already in the shared cache are not measured.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import hash_obj
from ..latency import LatencyCache, LatencyTarget, profile_network
from ..latency.fingerprint import describe_fingerprint
from ..latency.network import CALIBRATION_NETWORKS, CALIBRATION_TIME_S
from ..latency.runtime import check_target
from ..ops_zoo import build_zoo
from ..pipeline.profiling import slot_options
from ..progress import ProgressCounter
from ..slots import discover_slots
from .pipeline import STAGE_HELP, add_stage_arguments, cmd_stage
from .zoo import zoo_families, model_and_input

MODEL_ONLY = ("out", "batch_size", "backend", "device", "dtype", "threads", "input_size", "families",
              "memory_format", "calibration_networks", "calibration_time", "time_budget")


def cmd_model_profile(args: argparse.Namespace) -> int:
    given = {k: getattr(args, k) for k in ("device", "backend", "dtype", "batch_size", "memory_format", "threads")}
    target = LatencyTarget(**{k: v for k, v in given.items() if v is not None})
    check_target(target)  # a missing runtime or device fails before the model is built
    torch.manual_seed(0)
    model, shape = model_and_input(args.model_or_run, args.input_size, {})
    slots = discover_slots(model, torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)))
    zoo = build_zoo(model, slots, zoo_families(args, None))
    options = slot_options(model, slots, zoo)
    cache = LatencyCache()
    started = time.perf_counter()
    bar = ProgressCounter("profile", unit="entry")
    try:
        table, hits = profile_network(
            model, shape, options, target, cache,
            base_uid=f"network:{args.model_or_run}:{hash_obj(list(shape))}",
            calibration_networks=args.calibration_networks,
            calibration_time_s=args.calibration_time,
            on_progress=bar,
            time_budget_s=args.time_budget,
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    out = Path(args.out or f"latency-{args.model_or_run}.json")
    table.to_json(out)
    x, cal = table.extra, table.extra["calibration"]
    n = len(table.entries)
    print(f"{args.model_or_run} at {'x'.join(map(str, shape))} on {target.describe()}, {describe_fingerprint(table.fingerprint)}")
    print(f"  {n} entries ({sum(len(o.options) for o in options)} candidates in {len(slots)} slots, the part outside "
          f"the slots, the model and {len(cal['measured_ms']) - 1} random students)")
    source = "all from the cache" if hits == n else f"{hits} from the cache ({cache.path}), {n - hits} measured"
    print(f"  {source}, {seconds:.1f} s")
    print(f"  model {x['teacher_ms']:.3f} ms, outside the slots {x['outside_raw_ms']:.3f} ms; "
          f"whole network ~ {cal['scale']:.3f} x (outside + sum of blocks) {cal['offset_ms']:+.3f} ms, "
          f"leave-one-out error median {cal['loo_median_abs_err_pct']:.1f}%, max {cal['loo_max_abs_err_pct']:.1f}%")
    print(f"  table written to {out}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """A run directory runs the profile stage; anything else is a timm model name."""
    if Path(args.model_or_run).is_dir():
        used = [f"--{name.replace('_', '-')}" for name in MODEL_ONLY if getattr(args, name) not in (None, [])]
        if used:
            raise ConfigError(
                f"{' '.join(used)} apply to a timm model name, not to run directory {args.model_or_run}; "
                "set the target and profile options in its recipe instead"
            )
        args.run_dir = args.model_or_run
        args.families = None
        return cmd_stage(args)
    if "/" in args.model_or_run or args.model_or_run.startswith("."):
        raise ConfigError(f"run directory {args.model_or_run} does not exist; pass an existing one or a timm model name")
    if args.calibration_networks is None:
        args.calibration_networks = CALIBRATION_NETWORKS
    args.time_budget = 120.0 if args.time_budget is None else args.time_budget
    args.calibration_time = CALIBRATION_TIME_S if args.calibration_time is None else args.calibration_time
    return cmd_model_profile(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help=STAGE_HELP["profile"] + "; or, for a timm model name, its whole latency table",
        description="On a run directory, run the pipeline's profile stage. On a timm model name (random weights), "
        "measure every candidate of its zoo, the part outside the slots and a few whole students on a target, "
        "and write the calibrated latency table.",
    )
    p.add_argument("model_or_run", metavar="RUN_DIR|MODEL", help="run directory, or a timm model name (e.g. resnet50)")
    add_stage_arguments(p)
    g = p.add_argument_group("model mode (a timm model name)")
    g.add_argument("--batch-size", type=int, help="images per forward (default 1)")
    g.add_argument("--backend", help="torch, torch_compile, onnxruntime, openvino, onnxruntime-cuda or onnxruntime-tensorrt")
    g.add_argument("--device", help="cpu (default) or cuda:N")
    g.add_argument("--dtype", help="float32 (default); int8 (onnxruntime, openvino; in a run directory only, where the task's data calibrates it); bfloat16 (torch, openvino with native bf16); float16 on a GPU")
    g.add_argument("--memory-format", help="contiguous (default) or channels_last")
    g.add_argument("--threads", type=int, help="CPU threads (default 1)")
    g.add_argument("--input-size", metavar="SIZE", help="224, HxW or C,H,W (default: the model's pretrained_cfg size)")
    g.add_argument("--families", action="append", metavar="NAMES", help="comma-separated families (default: all)")
    g.add_argument("--calibration-networks", type=int,
                   help=f"random students measured end to end (default {CALIBRATION_NETWORKS})")
    g.add_argument("--calibration-time", type=float,
                   help=f"seconds those students are timed for at least (default {CALIBRATION_TIME_S:g})")
    g.add_argument("--time-budget", type=float, help="seconds of timed rounds, after building and warm-up (default 120)")
    g.add_argument("--out", help="where to write the table (default latency-MODEL.json)")
    p.set_defaults(func=cmd_profile)
