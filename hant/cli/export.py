"""``hant export``: write a run's student as its target runs it, then measure that file in its runtime."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..config import recipe_from_dict
from ..deploy import DeployedModule, load_artifact
from ..distill.trainer import evaluate
from ..errors import RunDirError
from ..export import FORMATS, SUFFIXES, artifact_format, export_student
from ..io import read_json
from ..latency.measure import time_runners
from ..latency.runners import DeployedRunner, cpu_clock
from ..pipeline import Context, RunDir
from ..pipeline.calibration_data import calibration_images
from .pipeline import add_plugin_argument
from ..student import load_student, student_deployment


def cmd_export(args: argparse.Namespace) -> int:
    run = RunDir(args.run_dir)
    if not (run.student_dir / "arch.json").is_file():
        raise RunDirError(f"{run.root} has no student yet; run `hant finetune {run.root}` first")
    student = load_student(run.student_dir, allow_plugins=args.allow_plugins)
    arch = read_json(run.student_dir / "arch.json")
    input_shape = tuple(arch["metadata"]["input_shape"])
    ctx = Context(recipe_from_dict(read_json(run.recipe)), run, allow_plugins=args.allow_plugins)
    deployment = student_deployment(run.student_dir)
    target, plan = deployment if deployment else (ctx.recipe.target, None)
    fmt = artifact_format(target) if args.format == "auto" else args.format
    out = Path(args.out) if args.out else run.root / "export" / f"student{SUFFIXES[fmt]}"
    images = calibration_images(ctx) if plan is not None and plan.uses_int8 else None
    result = export_student(student, input_shape, out, fmt, target, plan, images)
    summary: dict = {
        "path": str(result.path),
        "format": result.format,
        "precision": plan.describe() if plan else target.dtype,
        "max_abs_diff_vs_torch_float32": result.max_abs_diff,
        "predicted_latency_ms": (read_json(run.selection) if run.selection.is_file() else {}).get("predicted_latency_ms"),
    }
    if result.format != "torchscript":
        runtime_target = target if target.exports_onnx else None
        deployed = load_artifact(result.path, runtime_target or ctx.recipe.target)
        x = torch.randn(target.batch_size, *input_shape).numpy()
        deployed.bind(x)
        stat = time_runners({"artifact": DeployedRunner(deployed, cpu_clock(target))}, target.threads)["artifact"]
        summary["artifact_latency_ms"] = stat.median_ms
        summary["artifact_latency_iqr_ms"] = [stat.q1_ms, stat.q3_ms]
        summary["latency_target"] = target.to_dict()
        accuracy = evaluate(DeployedModule(deployed), ctx.eval_loader("test"), torch.device("cpu"))
        summary[f"artifact_{ctx.test_split}_accuracy"] = accuracy
    print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's student as its target runs it (OpenVINO IR, ONNX, TorchScript)")
    p.add_argument("run_dir", help="run directory with a fine-tuned student")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="auto: what the target's runtime loads (openvino: IR; onnxruntime: ONNX, QDQ where int8; torch: TorchScript)")
    p.add_argument("--out", help="output file (default RUN_DIR/export/student.<xml|onnx|pt>)")
    add_plugin_argument(p)
    p.set_defaults(func=cmd_export)
