"""Latency against run size: the same whole networks timed in a small run and inside a large one.

The profile's calibration networks set the latency table's absolute level, and the students they
predict are timed among many other networks. This benchmark times the teacher and
``--calibration-networks`` random students in a run of their own, then the same networks inside a
run that adds ``--others`` random students, alternating ``--reps`` times in one process, and prints
each repetition's small-run over large-run median ratio per network. The last line is a JSON
object with the median ratio per network and over all of them.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/latency_run_size.py \\
        --model efficientnet_b0 --batch-size 1 --reps 6
"""
from __future__ import annotations

import argparse
import json
import random
import statistics

import torch

from hant.latency import LatencyTarget, measure
from hant.latency.network import assemble, calibration_choices
from hant.models import create_model
from hant.ops_zoo import build_zoo, default_families
from hant.pipeline.profiling import slot_options
from hant.slots import discover_slots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--calibration-networks", type=int, default=6, help="random students in the small run")
    p.add_argument("--others", type=int, default=24, help="random students the large run adds")
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--time-budget", type=float, default=60.0, help="seconds for each run")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    target = LatencyTarget(backend="torch", batch_size=args.batch_size, threads=1)

    torch.manual_seed(args.seed)
    model = create_model(args.model, 1000, 3).eval()
    shape = (3, args.input_size, args.input_size)
    slots = discover_slots(model, torch.randn(2, *shape))
    options = slot_options(model, slots, build_zoo(model, slots, default_families()))
    variants = calibration_choices(options, args.calibration_networks, args.seed)
    small = [("teacher", model, shape)]
    small += [(f"calibration{i}", assemble(model, options, v), shape) for i, v in enumerate(variants)]
    rng = random.Random(args.seed + 1)
    others = [tuple(rng.randrange(len(s.options)) for s in options) for _ in range(args.others)]
    large = small + [(f"other{i}", assemble(model, options, c), shape) for i, c in enumerate(others)]
    names = [name for name, _, _ in small]

    ratios: list[list[float]] = []
    for rep in range(args.reps):
        in_small = measure(small, target, time_budget_s=args.time_budget, seed=rep)
        in_large = measure(large, target, time_budget_s=args.time_budget, seed=rep)
        ratios.append([in_small[n].median_ms / in_large[n].median_ms for n in names])
        print(f"rep {rep}: teacher {in_small['teacher'].median_ms:.3f} ms in {len(small)}, "
              f"{in_large['teacher'].median_ms:.3f} ms in {len(large)}; small/large per network "
              + " ".join(f"{r:.3f}" for r in ratios[-1]), flush=True)
    per_network = [statistics.median(col) for col in zip(*ratios)]
    print(json.dumps({
        "model": args.model, "batch_size": args.batch_size, "small_run": len(small), "large_run": len(large),
        "reps": args.reps, "median_ratio_per_network": {n: round(r, 4) for n, r in zip(names, per_network)},
        "median_ratio": round(statistics.median(r for row in ratios for r in row), 4),
        "reps_with_median_ratio_above_1": sum(statistics.median(row) > 1 for row in ratios),
    }))


if __name__ == "__main__":
    main()
