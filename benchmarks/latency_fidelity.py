"""Latency fidelity: how well the profiled table predicts whole students measured end to end.

Builds ``--students`` students of ``--model`` (random weights) in one of two regions:

* ``--region random`` (the default): every slot filled by a uniformly random candidate of the zoo;
  such students sit at 0.7-1.0x the teacher;
* ``--region search``: the students the integer program returns, one per draw of a budget uniform
  in ``--budgets`` (fractions of the teacher the table predicts, 0.25-0.6 by default) and of
  perturbed scores (``tests/search_instances.py``, ``realistic``'s model: a candidate at ``u`` times its
  slot's keep latency scores ``a (1.1 - u)^p exp(N(0, --score-noise))``), over ``--options-per-slot``
  candidates per slot (keep and a seeded random draw of the rest), so that profiling them all
  takes minutes rather than the hours the whole zoo would.

It profiles only what the students need (their candidates, the part outside the slots, and the
calibration networks; the persistent cache makes a rerun fast), predicts each student from the
table, then measures every student end to end, interleaved, for at least ``--min-time`` seconds
(the calibration networks too). ``--backend`` and ``--dtype`` are passed to ``LatencyTarget`` by
name; a pair this machine cannot run is refused with the library's one-line error. int8 (ONNX Runtime,
OpenVINO) is quantized on real images: the first ``--calibration-images`` training digits of
:func:`hant.data.digits_images` at the input size in three channels (no ImageNet here; a latency does
not depend on the scales), and every block on the model's own inputs to its slot on those images,
as the pipeline's profile stage does; every student and the teacher calibrate on the same images.
A summary line (model, backend, dtype, the headline errors) goes to stderr; the last line
printed is a JSON object: ``within_5pct``, ``within_10pct`` and ``median_abs_err_pct`` of the
calibrated prediction, the same for the uncorrected sum (``raw_*``) and for the prediction
re-anchored to the machine's current speed (``anchored_*``: scaled by the teacher measured in the
students' run over the teacher in the table; ``teacher_drift`` is that factor), with fast
calibration networks the same for the correction refitted without them (``random_calibration_*``),
the calibration's
leave-one-out error, ``profile_seconds``, the students' measured ratios to the teacher
(``student_ratio_min``/``_median``/``_max``) and the setting.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/latency_fidelity.py \\
        --model efficientnet_b0 --batch-size 8 --students 30 [--region search] \\
        [--backend onnxruntime | --backend openvino --dtype int8]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import math
import time
from dataclasses import replace
from typing import Sequence

import torch

from hant.data import digits_images
from hant.errors import HantError, InfeasibleBudgetError
from hant.io import hash_obj
from hant.latency import LatencyCache, LatencyTable, LatencyTarget, SlotOptions, measure, profile_network
from hant.latency.calibration import fit_calibration
from hant.latency.network import CALIBRATION_NETWORKS, assemble
from hant.latency.runtime import check_target
from hant.models import create_model
from hant.ops_zoo import build_zoo, default_families
from hant.pipeline.calibration_data import needs_calibration, slot_inputs
from hant.pipeline.profiling import slot_options
from hant.progress import ProgressCounter, enable_progress
from hant.search import CandidateCost, Problem, SlotChoices, solve
from hant.slots import discover_slots


Choice = tuple[int, ...]


def offered_options(options: Sequence[SlotOptions], per_slot: int, rng: random.Random) -> list[SlotOptions]:
    """Each slot with keep and ``per_slot - 1`` of its other candidates, drawn with ``rng``."""
    out = []
    for slot in options:
        rest = list(slot.options[1:])
        picked = rng.sample(rest, min(len(rest), per_slot - 1))
        out.append(replace(slot, options=(slot.options[0], *picked)))
    return out


def search_students(table: LatencyTable, options: Sequence[SlotOptions], n: int, budgets: tuple[float, float],
                    noise: float, rng: random.Random) -> tuple[list[Choice], list[float]]:
    """``n`` distinct students the integer program picks under budgets drawn uniformly in ``budgets``
    (fractions of the table's teacher) and perturbed scores; also the budget fraction of each."""
    teacher_ms = float(table.extra["teacher_predicted_ms"])
    shapes = [(rng.uniform(0.2, 2.0), rng.uniform(1.0, 3.0)) for _ in options]  # per-slot (a, p)
    students: list[Choice] = []
    fractions: list[float] = []
    for _ in range(20 * n):
        if len(students) == n:
            break
        fraction = rng.uniform(*budgets)
        slots = []
        for slot, (a, p) in zip(options, shapes):
            keep_ms = table.latency_ms(slot.options[0][0])
            costs = [CandidateCost("0", keep_ms, 0.0)]
            for k, (uid, _) in enumerate(slot.options[1:], start=1):
                u = table.latency_ms(uid) / keep_ms
                score = a * max(0.0, 1.1 - u) ** p * math.exp(rng.gauss(0.0, noise))
                costs.append(CandidateCost(str(k), table.latency_ms(uid), score))
            slots.append(SlotChoices(slot.path, tuple(costs)))
        try:
            problem = Problem(tuple(slots), fraction * teacher_ms, float(table.extra["fixed_ms"]))
            selection = solve(problem, time_limit_s=5.0)
        except InfeasibleBudgetError:
            continue
        choice = tuple(int(selection.choices[slot.path]) for slot in options)
        if choice not in students:
            students.append(choice)
            fractions.append(fraction)
    return students, fractions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--backend", default="torch", help="a LatencyTarget backend, by name")
    p.add_argument("--dtype", default="float32", help="a LatencyTarget dtype, by name")
    p.add_argument("--region", choices=("random", "search"), default="random",
                   help="uniformly random students, or the students the search returns for budgets in --budgets")
    p.add_argument("--budgets", type=float, nargs=2, default=(0.25, 0.6), metavar=("LOW", "HIGH"),
                   help="search region: budgets as fractions of the teacher")
    p.add_argument("--options-per-slot", type=int, default=16, help="search region: candidates per slot, keep included")
    p.add_argument("--score-noise", type=float, default=0.3, help="search region: log-normal spread of the scores")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calibration-networks", type=int, default=CALIBRATION_NETWORKS)
    p.add_argument("--fast-calibration-networks", type=int, default=0,
                   help="more calibration networks drawn from options well below each block's latency")
    p.add_argument("--rel-precision", type=float, default=0.02)
    p.add_argument("--time-budget", type=float, default=240.0, help="seconds for each of the two measurements")
    p.add_argument("--min-time", type=float, default=0.0,
                   help="seconds the whole networks (the calibration's, then the students) are timed for at least, "
                        "so that their medians average the machine's slow wander instead of catching seconds of it")
    p.add_argument("--calibration-images", type=int, default=None,
                   help="int8: digit images given to the quantizer of every network and block (default: one batch, "
                        "as many as a latency runner calibrates on)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    enable_progress(sys.stderr.isatty())
    torch.set_num_threads(args.threads)
    try:
        target = LatencyTarget(backend=args.backend, dtype=args.dtype, batch_size=args.batch_size, threads=args.threads)
        check_target(target)
    except HantError as e:
        raise SystemExit(f"latency_fidelity: error: {e}") from None
    load_before = os.getloadavg()

    torch.manual_seed(args.seed)
    model = create_model(args.model, 1000, 3).eval()
    shape = (3, args.input_size, args.input_size)
    slots = discover_slots(model, torch.randn(2, *shape))
    zoo = build_zoo(model, slots, default_families())
    options = slot_options(model, slots, zoo)  # the calibration networks draw from all of them, as in a real run
    students_from = options
    rng = random.Random(args.seed + 1)
    if args.region == "random":
        students = [tuple(rng.randrange(len(s.options)) for s in options) for _ in range(args.students)]
        needed = {s.options[k][0] for c in students for s, k in zip(options, c)}
    else:  # the search needs every offered candidate's latency; the students are drawn after profiling
        students_from = offered_options(options, args.options_per_slot, rng)
        needed = {uid for s in students_from for uid, _ in s.options}

    images, per_slot = None, None
    if needs_calibration([args.dtype]):
        images = digits_images(args.input_size, args.calibration_images or args.batch_size, channels=shape[0])
        per_slot = slot_inputs(model, slots, torch.from_numpy(images))

    started = time.perf_counter()
    bar = ProgressCounter("profile", unit="entry")
    try:
        table, hits = profile_network(
            model, shape, options, target, LatencyCache(),
            base_uid=f"network:{args.model}:{hash_obj(list(shape))}",
            calibration_networks=args.calibration_networks, fast_calibration_networks=args.fast_calibration_networks,
            only=needed, seed=args.seed,
            on_progress=bar, rel_precision=args.rel_precision, time_budget_s=args.time_budget,
            calibration_time_s=args.min_time, calibration=images, slot_calibration=per_slot,
        )
    finally:
        bar.close()
    profile_seconds = time.perf_counter() - started
    fractions: list[float] = []
    if args.region == "search":
        students, fractions = search_students(table, students_from, args.students, tuple(args.budgets),
                                              args.score_noise, rng)
        if not students:
            fastest = table.predict_ms(min((uid for uid, _ in s.options), key=table.latency_ms) for s in students_from)
            raise SystemExit(
                f"latency_fidelity: error: the search met no budget in {args.budgets[0]:g}-{args.budgets[1]:g} of the "
                f"teacher ({table.extra['teacher_predicted_ms']:.3f} ms predicted): the fastest student offered is predicted "
                f"at {fastest / table.extra['teacher_predicted_ms']:.2f} of it; raise --budgets or --options-per-slot"
            )

    nets = [(f"student{i}", assemble(model, students_from, c), shape) for i, c in enumerate(students)]
    nets.append(("teacher", model, shape))  # the reference: how fast the machine is now against the table
    started = time.perf_counter()
    bar = ProgressCounter("students", unit="student")
    try:
        measured = measure(nets, target, rel_precision=args.rel_precision, time_budget_s=args.time_budget,
                           min_time_s=args.min_time, on_round=bar,
                           calibration=None if images is None else {name: images for name, _, _ in nets})
    finally:
        bar.close()
    measure_seconds = time.perf_counter() - started

    cal = table.extra["calibration"]
    outside = table.extra["outside_raw_ms"]
    drift = measured["teacher"].median_ms / table.extra["teacher_ms"]
    # The calibration points are the teacher, the random networks, then the fast ones: refitted on the
    # first two groups alone, the same run says what the fast networks changed.
    n_random = 1 + args.calibration_networks
    random_only = fit_calibration(cal["predicted_ms"][:n_random], cal["measured_ms"][:n_random]) \
        if args.fast_calibration_networks > 0 else None
    errs, raw_errs, anchored_errs, random_only_errs = [], [], [], []
    for (name, _, _), c in zip(nets, students):
        uids = [s.options[k][0] for s, k in zip(students_from, c)]
        m = measured[name].median_ms
        pred = table.predict_ms(uids)
        raw = outside + sum(table.measured_ms(u) for u in uids)
        errs.append(100 * (pred - m) / m)
        raw_errs.append(100 * (raw - m) / m)
        anchored_errs.append(100 * (pred * drift - m) / m)
        if random_only is not None:
            random_only_errs.append(100 * (random_only.apply(raw) - m) / m)
        print(f"measured {m:9.3f} ms  predicted {pred:9.3f} ms  uncorrected {raw:9.3f} ms  error {errs[-1]:+6.2f}%  "
              f"re-anchored to the teacher {anchored_errs[-1]:+6.2f}%", file=sys.stderr)

    ratios = sorted(measured[name].median_ms / measured["teacher"].median_ms for name, _, _ in nets[:-1])

    def share(xs: list[float], pct: float) -> float:
        return round(sum(abs(x) <= pct for x in xs) / len(xs), 4)

    result = {
        "model": args.model, "input_size": args.input_size, "batch_size": args.batch_size,
        "backend": args.backend, "dtype": args.dtype, "threads": args.threads, "region": args.region,
        "students": len(students), "calibration_images": 0 if images is None else len(images),
        "within_5pct": share(errs, 5), "within_10pct": share(errs, 10),
        "median_abs_err_pct": round(statistics.median(abs(e) for e in errs), 3),
        "max_abs_err_pct": round(max(abs(e) for e in errs), 3),
        "mean_err_pct": round(statistics.fmean(errs), 3),
        "teacher_drift": round(drift, 4),
        "anchored_within_5pct": share(anchored_errs, 5), "anchored_within_10pct": share(anchored_errs, 10),
        "anchored_median_abs_err_pct": round(statistics.median(abs(e) for e in anchored_errs), 3),
        "raw_within_5pct": share(raw_errs, 5), "raw_within_10pct": share(raw_errs, 10),
        "raw_median_abs_err_pct": round(statistics.median(abs(e) for e in raw_errs), 3),
        **({"random_calibration_within_5pct": share(random_only_errs, 5),
            "random_calibration_within_10pct": share(random_only_errs, 10),
            "random_calibration_model": random_only.model, "random_calibration_scale": round(random_only.scale, 4),
            "random_calibration_offset_ms": round(random_only.offset_ms, 3)} if random_only is not None else {}),
        "calibration_networks": len(cal["measured_ms"]), "fast_calibration_networks": args.fast_calibration_networks,
        "calibration_model": cal["model"],
        "calibration_scale": round(cal["scale"], 4), "calibration_offset_ms": round(cal["offset_ms"], 3),
        "calibration_loo_median_abs_err_pct": round(cal["loo_median_abs_err_pct"], 3),
        "calibration_loo_max_abs_err_pct": round(cal["loo_max_abs_err_pct"], 3),
        "teacher_ms": round(table.extra["teacher_ms"], 3), "outside_slots_ms": round(outside, 3),
        "student_ratio_min": round(ratios[0], 4), "student_ratio_median": round(statistics.median(ratios), 4),
        "student_ratio_max": round(ratios[-1], 4),
        **({"budgets": list(args.budgets), "options_per_slot": args.options_per_slot, "score_noise": args.score_noise,
            "budget_fraction_min": round(min(fractions), 4), "budget_fraction_max": round(max(fractions), 4)}
           if args.region == "search" else {}),
        "profiled_entries": len(table.entries), "cache_hits": hits,
        "profile_seconds": round(profile_seconds, 1), "measure_seconds": round(measure_seconds, 1),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"{args.model} {args.input_size} px, batch {args.batch_size}, {args.backend} {args.dtype}, {args.region} region: "
          f"{len(students)} students, within 10 % {result['within_10pct']:.2f}, within 5 % {result['within_5pct']:.2f}, "
          f"median |error| {result['median_abs_err_pct']:.1f} %; profile {profile_seconds:.0f} s "
          f"({len(table.entries)} entries), students {measure_seconds:.0f} s", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
