"""``hant export``: write a run's student as ONNX or TorchScript and measure it in ONNX Runtime."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..errors import RunDirError
from ..export import FORMATS, export_model
from ..io import read_json
from ..latency import LatencyTarget, measure
from ..pipeline import RunDir
from ..student import load_student


def cmd_export(args: argparse.Namespace) -> int:
    run = RunDir(args.run_dir)
    if not (run.student_dir / "arch.json").is_file():
        raise RunDirError(f"{run.root} has no student yet; run `hant finetune {run.root}` first")
    student = load_student(run.student_dir)
    arch = read_json(run.student_dir / "arch.json")
    input_shape = tuple(arch["metadata"]["input_shape"])
    suffix = ".onnx" if args.format == "onnx" else ".pt"
    out = Path(args.out) if args.out else run.root / "export" / f"student{suffix}"
    result = export_model(student, input_shape, out, args.format)
    recipe = read_json(run.recipe)
    target = LatencyTarget(**{**recipe["target"], "backend": "onnxruntime", "device": "cpu", "dtype": "float32"})
    ort_ms = measure([("student", student, input_shape)], target)["student"].median_ms
    selection = read_json(run.selection) if run.selection.is_file() else {}
    summary = {
        "path": str(result.path),
        "format": result.format,
        "max_abs_diff": result.max_abs_diff,
        "onnxruntime_latency_ms": ort_ms,
        "predicted_latency_ms": selection.get("predicted_latency_ms"),
        "latency_target": dataclasses.asdict(target),
    }
    print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's student as ONNX or TorchScript")
    p.add_argument("run_dir", help="run directory with a fine-tuned student")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", help="output file (default RUN_DIR/export/student.onnx or .pt)")
    p.set_defaults(func=cmd_export)
