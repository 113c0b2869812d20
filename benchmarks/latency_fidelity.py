"""Latency fidelity: how well the profiled table predicts whole random students measured end to end.

Builds ``--students`` random students of ``--model`` (every slot filled by a uniformly random
candidate of the zoo, random weights), profiles only what they need (their candidates, the part
outside the slots, and the calibration networks; the persistent cache makes a rerun fast), predicts
each student from the table, then measures every student end to end, interleaved, for at least
``--min-time`` seconds (the calibration networks too). The last line
printed is a JSON object: ``within_5pct``, ``within_10pct`` and ``median_abs_err_pct`` of the
calibrated prediction, the same for the uncorrected sum (``raw_*``) and for the prediction
re-anchored to the machine's current speed (``anchored_*``: scaled by the teacher measured in the
students' run over the teacher in the table; ``teacher_drift`` is that factor), the calibration's
leave-one-out error, ``profile_seconds`` and the setting.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/latency_fidelity.py \\
        --model efficientnet_b0 --batch-size 8 --students 30 [--backend onnxruntime]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

import torch

from hant.io import hash_obj
from hant.latency import LatencyCache, LatencyTarget, measure, profile_network
from hant.latency.network import CALIBRATION_NETWORKS, assemble
from hant.models import create_model
from hant.ops_zoo import build_zoo, default_families
from hant.pipeline.profiling import slot_options
from hant.progress import ProgressCounter, enable_progress
from hant.slots import discover_slots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--backend", default="torch")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calibration-networks", type=int, default=CALIBRATION_NETWORKS)
    p.add_argument("--rel-precision", type=float, default=0.02)
    p.add_argument("--time-budget", type=float, default=240.0, help="seconds for each of the two measurements")
    p.add_argument("--min-time", type=float, default=0.0,
                   help="seconds the whole networks (the calibration's, then the students) are timed for at least, "
                        "so that their medians average the machine's slow wander instead of catching seconds of it")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    enable_progress(sys.stderr.isatty())
    torch.set_num_threads(args.threads)
    target = LatencyTarget(backend=args.backend, batch_size=args.batch_size, threads=args.threads)
    load_before = os.getloadavg()

    torch.manual_seed(args.seed)
    model = create_model(args.model, 1000, 3).eval()
    shape = (3, args.input_size, args.input_size)
    slots = discover_slots(model, torch.randn(2, *shape))
    zoo = build_zoo(model, slots, default_families())
    options = slot_options(model, slots, zoo)
    rng = random.Random(args.seed + 1)
    students = [tuple(rng.randrange(len(s.options)) for s in options) for _ in range(args.students)]
    needed = {s.options[k][0] for c in students for s, k in zip(options, c)}

    started = time.perf_counter()
    bar = ProgressCounter("profile", unit="entry")
    try:
        table, hits = profile_network(
            model, shape, options, target, LatencyCache(),
            base_uid=f"network:{args.model}:{hash_obj(list(shape))}",
            calibration_networks=args.calibration_networks, only=needed, seed=args.seed,
            on_progress=bar, rel_precision=args.rel_precision, time_budget_s=args.time_budget,
            calibration_time_s=args.min_time,
        )
    finally:
        bar.close()
    profile_seconds = time.perf_counter() - started

    nets = [(f"student{i}", assemble(model, options, c), shape) for i, c in enumerate(students)]
    nets.append(("teacher", model, shape))  # the reference: how fast the machine is now against the table
    started = time.perf_counter()
    bar = ProgressCounter("students", unit="student")
    try:
        measured = measure(nets, target, rel_precision=args.rel_precision, time_budget_s=args.time_budget,
                           min_time_s=args.min_time, on_round=bar)
    finally:
        bar.close()
    measure_seconds = time.perf_counter() - started

    cal = table.extra["calibration"]
    outside = table.extra["outside_raw_ms"]
    drift = measured["teacher"].median_ms / table.extra["teacher_ms"]
    errs, raw_errs, anchored_errs = [], [], []
    for (name, _, _), c in zip(nets, students):
        uids = [s.options[k][0] for s, k in zip(options, c)]
        m = measured[name].median_ms
        pred = table.predict_ms(uids)
        raw = outside + sum(table.measured_ms(u) for u in uids)
        errs.append(100 * (pred - m) / m)
        raw_errs.append(100 * (raw - m) / m)
        anchored_errs.append(100 * (pred * drift - m) / m)
        print(f"measured {m:9.3f} ms  predicted {pred:9.3f} ms  uncorrected {raw:9.3f} ms  error {errs[-1]:+6.2f}%  "
              f"re-anchored to the teacher {anchored_errs[-1]:+6.2f}%", file=sys.stderr)

    def share(xs: list[float], pct: float) -> float:
        return round(sum(abs(x) <= pct for x in xs) / len(xs), 4)

    result = {
        "model": args.model, "input_size": args.input_size, "batch_size": args.batch_size,
        "backend": args.backend, "threads": args.threads, "students": args.students,
        "within_5pct": share(errs, 5), "within_10pct": share(errs, 10),
        "median_abs_err_pct": round(statistics.median(abs(e) for e in errs), 3),
        "max_abs_err_pct": round(max(abs(e) for e in errs), 3),
        "mean_err_pct": round(statistics.fmean(errs), 3),
        "teacher_drift": round(drift, 4),
        "anchored_within_5pct": share(anchored_errs, 5), "anchored_within_10pct": share(anchored_errs, 10),
        "anchored_median_abs_err_pct": round(statistics.median(abs(e) for e in anchored_errs), 3),
        "raw_within_5pct": share(raw_errs, 5), "raw_within_10pct": share(raw_errs, 10),
        "raw_median_abs_err_pct": round(statistics.median(abs(e) for e in raw_errs), 3),
        "calibration_networks": len(cal["measured_ms"]),
        "calibration_scale": round(cal["scale"], 4), "calibration_offset_ms": round(cal["offset_ms"], 3),
        "calibration_loo_median_abs_err_pct": round(cal["loo_median_abs_err_pct"], 3),
        "calibration_loo_max_abs_err_pct": round(cal["loo_max_abs_err_pct"], 3),
        "teacher_ms": round(table.extra["teacher_ms"], 3), "outside_slots_ms": round(outside, 3),
        "profiled_entries": len(table.entries), "cache_hits": hits,
        "profile_seconds": round(profile_seconds, 1), "measure_seconds": round(measure_seconds, 1),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
