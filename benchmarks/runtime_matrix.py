"""Runtime matrix: every network in every runtime and precision this CPU runs, timed interleaved in one run.

Columns: torch eager float32 and bfloat16, ONNX Runtime float32 and int8 (QDQ, static), OpenVINO
float32, bfloat16 and int8 (NNCF), and OpenVINO running ONNX Runtime's int8 QDQ graph (the target's
``quantizer: onnxruntime``). A column the CPU cannot run (OpenVINO bf16 without native bf16)
is reported as such, not timed. Rows: a run's teacher and student (``--run``, by default the demo's,
made by ``make demo``; a run without a student gives its teacher row alone; skipped with a note when
the run has no teacher), with their test accuracy in every precision, and
timm's efficientnet_b0, mobilenetv2_100 and resnet50 at 224 px (random weights: only their latency
is meaningful). int8 calibrates on real images: the demo's training images for the demo networks,
and for the 224 px networks scikit-learn's digits upsampled to 224 px in three channels (no ImageNet
here; latency does not depend on what the scales are).

Every (network, runtime) pair is built first; then all are timed in shuffled rounds
(:func:`hant.latency.measure.time_runners`), so the machine's drift hits every cell alike. The last
line printed is a JSON object.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/runtime_matrix.py [--run runs/demo] [--models ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch

from hant.config import recipe_from_dict
from hant.data import digits_images
from hant.deploy import PrecisionPlan, deployed_module
from hant.distill.trainer import evaluate
from hant.errors import HantError
from hant.io import read_json
from hant.latency import LatencyTarget, device_fingerprint
from hant.latency.fingerprint import describe_fingerprint
from hant.latency.measure import time_runners
from hant.latency.runners import build_runner, prepare_module
from hant.latency.runtime import check_target
from hant.pipeline import Context, RunDir
from hant.pipeline.calibration_data import calibration_images
from hant.student import load_student, student_deployment

COLUMNS = [  # label, backend, dtype, int8 quantizer (None: the runtime's own)
    ("torch eager fp32", "torch", "float32", None),
    ("torch eager bf16", "torch", "bfloat16", None),
    ("ONNX Runtime fp32", "onnxruntime", "float32", None),
    ("ONNX Runtime int8", "onnxruntime", "int8", None),
    ("OpenVINO fp32", "openvino", "float32", None),
    ("OpenVINO bf16", "openvino", "bfloat16", None),
    ("OpenVINO int8", "openvino", "int8", None),
    ("OpenVINO int8, ONNX Runtime's QDQ", "openvino", "int8", "onnxruntime"),
]
MODELS = ("efficientnet_b0", "mobilenetv2_100", "resnet50")
CALIBRATION_IMAGES = 64
"""Digit images the int8 columns of the 224 px networks calibrate on."""


def networks(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """Rows: name, module, per-sample shape, batch size, calibration images, and (demo) the test loader."""
    rows, notes = [], []
    run = RunDir(args.run)
    if run.teacher_weights.is_file():
        ctx = Context(recipe_from_dict(read_json(run.recipe)), run)
        images = calibration_images(ctx)
        name = ctx.recipe.name
        common = {"shape": ctx.input_shape, "batch": ctx.recipe.target.batch_size, "calibration": images,
                  "test": ctx.eval_loader("test")}
        rows.append({"name": f"{name} teacher", "module": ctx.teacher, **common})
        if (run.student_dir / "arch.json").is_file():
            plan = (student_deployment(run.student_dir) or (None, None))[1]
            rows.append({"name": f"{name} student", "module": load_student(run.student_dir), "student_plan": plan, **common})
    else:
        notes.append(f"no trained teacher in {args.run} (run `make demo` first): its rows are skipped")
    images = digits_images(args.input_size, CALIBRATION_IMAGES, channels=3)
    for name in args.models:
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=1000).eval()
        rows.append({"name": f"{name}, {args.input_size} px", "module": model, "shape": (3, args.input_size, args.input_size),
                     "batch": args.batch_size, "calibration": images, "test": None})
    return rows, notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo", help="demo run directory (teacher and student rows)")
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=1, help="batch of the timm rows (the demo rows use the demo's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-budget", type=float, default=300.0)
    p.add_argument("--rel-precision", type=float, default=0.02)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows, notes = networks(args)
    columns, skipped = [], {}
    for label, backend, dtype, quantizer in COLUMNS:
        try:
            check_target(LatencyTarget(backend=backend, dtype=dtype, threads=args.threads, quantizer=quantizer))
            columns.append((label, backend, dtype, quantizer))
        except HantError as e:
            skipped[label] = str(e)
    runners, accuracy = {}, {}
    with tempfile.TemporaryDirectory(prefix="hant-matrix-") as tmp:
        for r, row in enumerate(rows):
            for c, (label, backend, dtype, quantizer) in enumerate(columns):
                target = LatencyTarget(backend=backend, dtype=dtype, batch_size=row["batch"], threads=args.threads,
                                       quantizer=quantizer)
                key = f"{row['name']} | {label}"
                module = prepare_module(row["module"], target)
                plan = PrecisionPlan(dtype)
                runners[key] = build_runner(module, row["shape"], target, Path(tmp) / f"{r}-{c}.onnx", key, plan,
                                            row["calibration"])
                if row["test"] is not None:
                    scored = deployed_module(row["module"], row["shape"], target, plan, Path(tmp), f"acc{r}-{c}",
                                             row["calibration"])
                    accuracy[key] = evaluate(scored, row["test"], torch.device("cpu"))
            print(f"built {row['name']}", file=sys.stderr, flush=True)
        stats = time_runners(runners, args.threads, rel_precision=args.rel_precision, time_budget_s=args.time_budget)
    labels = [c[0] for c in columns]
    print(f"Device: {describe_fingerprint(device_fingerprint(LatencyTarget(backend='openvino', threads=args.threads)))}")
    print()
    print("| network | " + " | ".join(labels + list(skipped)) + " |")
    print("|---|" + "---|" * (len(labels) + len(skipped)))
    table = {}
    for row in rows:
        cells, table[row["name"]] = [], {}
        for label in labels:
            key = f"{row['name']} | {label}"
            ms = stats[key].median_ms
            acc = accuracy.get(key)
            table[row["name"]][label] = {"ms": ms, "accuracy": acc}
            cells.append(f"{ms:.2f}" + (f" ({acc:.2f} %)" if acc is not None else ""))
        cells += ["n/a"] * len(skipped)
        print(f"| {row['name']} (batch {row['batch']}) | " + " | ".join(cells) + " |")
    for label, why in skipped.items():
        print(f"\n{label}: not measured: {why}")
    for note in notes:
        print(f"\nnote: {note}")
    print(json.dumps({"table": table, "skipped": skipped, "notes": notes, "threads": args.threads,
                      "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
