"""How long ``hant.search.solve`` takes on synthetic selection problems.

Time measured: wall-clock seconds of one ``solve()`` call (validation, dominance, scaling, presolve,
model building and the solver), after one warm-up solve per backend so the one-time solver import is
not counted. Each family is solved on 5 instances (seeds 0-4) with budgets at 30, 40, 50, 60 and 70 %
of the way from the fastest selection to the all-keep one; the median of those 5 times is reported.

Families (see ``tests/search_instances.py``): ``realistic`` (score falls as latency rises, with noise),
``uniform`` (latency and score independent), and ``pruning`` (channel pruning only: every width of
60 layers of 64-512 channels, latency a staircase in groups of 32 channels).

    .venv/bin/python benchmarks/search_scaling.py [--backend cpsat] [--plain]

The last line printed is a JSON object with every family's median seconds and whether all five
solves were proven optimal.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import search_instances as instances  # noqa: E402

from hant.search import BACKENDS, solve  # noqa: E402

FRACTIONS = (0.3, 0.4, 0.5, 0.6, 0.7)
FAMILIES = {
    "55x197_realistic": lambda seed, f: instances.realistic(55, 197, seed=seed, fraction=f),
    "55x197_uniform": lambda seed, f: instances.uniform(55, 197, seed=seed, fraction=f),
    "200x200_realistic": lambda seed, f: instances.realistic(200, 200, seed=seed, fraction=f),
    "200x200_uniform": lambda seed, f: instances.uniform(200, 200, seed=seed, fraction=f),
    "pruning_60_layers": lambda seed, f: instances.pruning(60, seed=seed, fraction=f),
}


def time_family(build, backend: str, fixing: bool, time_limit_s: float) -> dict:
    """Solve the five instances of one family; their times and what the solver proved."""
    times, optimal, kept, left = [], [], [], []
    for seed, fraction in enumerate(FRACTIONS):
        problem = build(seed, fraction)
        start = time.perf_counter()
        sel = solve(problem, backend=backend, fixing=fixing, time_limit_s=time_limit_s)
        times.append(time.perf_counter() - start)
        optimal.append(sel.status == "optimal")
        kept.append(sel.extras.get("candidates_after_dominance"))
        left.append(sel.extras.get("candidates_after_fixing", kept[-1]))
    return {
        "median_s": round(statistics.median(times), 4),
        "max_s": round(max(times), 4),
        "optimal": all(optimal),
        "times_s": [round(t, 4) for t in times],
        "candidates": sum(len(s.candidates) for s in problem.slots),
        "after_dominance_median": statistics.median(kept),
        "after_fixing_median": statistics.median(left),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="cpsat")
    parser.add_argument("--plain", action="store_true",
                        help="also time the backend on the whole model (no reduced-cost fixing; 10 s limit)")
    args = parser.parse_args()

    solve(instances.realistic(5, 5, seed=99), backend=args.backend)  # warm-up: imports the solver
    load_before = os.getloadavg()[0]
    result: dict = {
        "timing": "solve() wall seconds, median of 5 instances (seeds 0-4, budgets 30-70 % of the span); "
                  "one warm-up solve first",
        "backend": args.backend,
    }
    for name, build in FAMILIES.items():
        result[name] = time_family(build, args.backend, fixing=True, time_limit_s=10.0)
        r = result[name]
        print(f"{name:<20} median {r['median_s']:.4f} s  max {r['max_s']:.4f} s  optimal {r['optimal']}  "
              f"candidates {r['candidates']} -> {r['after_dominance_median']} -> {r['after_fixing_median']}", flush=True)
        if args.plain:
            plain = time_family(build, args.backend, fixing=False, time_limit_s=10.0)
            result[name]["plain_model"] = {k: plain[k] for k in ("median_s", "max_s", "optimal")}
            print(f"{'  plain model':<20} median {plain['median_s']:.4f} s  max {plain['max_s']:.4f} s  "
                  f"optimal {plain['optimal']}", flush=True)
    result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
