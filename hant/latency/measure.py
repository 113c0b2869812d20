"""Interleaved latency measurement of many small modules on a noisy machine.

Every item is warmed up and its inner loop calibrated so that one sample lasts ``min_sample_ms``;
then items are timed in rounds, each round timing every item once in a fresh random order, so that
slow drift (frequency scaling, neighbours on a shared machine) hits all items alike. Rounds stop when
the distribution-free confidence interval of every item's median is within ``rel_precision`` of
that median, or at ``max_reps`` rounds, or when the time budget is spent (never before ``min_reps``).

That interval treats samples as independent, but a shared machine's speed wanders over tens of
seconds (the same network's median moved by 6 % between consecutive 12-second windows on the
development VM), so a median that converged in a few seconds is precise about those seconds only.
``min_time_s`` keeps the rounds going at least that long, so that a median averages the wander.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..deploy.plan import PrecisionPlan
from ..errors import LatencyError
from .allocator import keep_freed_memory
from .runners import Runner, build_runner, prepare_module, restore_modes, training_modes
from .runtime import check_target
from .stats import LatencyStat, relative_ci_halfwidth
from .target import LatencyTarget

__all__ = ["LatencyStat", "Timing", "measure", "measuring", "time_runners"]

log = logging.getLogger(__name__)

MAX_INNER = 100_000
MEASURE_TIME_BUDGET_S = 120.0
"""Default ``time_budget_s`` of :func:`measure`."""

ONEDNN_PRIMITIVE_CACHE = "65536"
"""oneDNN primitives torch keeps compiled (its default is 1,024). Measured interleaved, 30 networks
of different operations need more than that, and each evicted convolution is compiled again: torch
eager efficientnet_b0 at batch 8 ran 13-18 % slower among the search's students than in its own
table, and 3 % with this capacity (benchmarks/README.md). A deployed network runs alone with all its
primitives cached, so this is how it is timed. oneDNN reads the variable when it first compiles a
primitive, so it is set on importing hant's latency package, unless the environment sets it."""
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_PRIMITIVE_CACHE)


@contextlib.contextmanager
def measuring(threads: int) -> Iterator[None]:
    """The process-wide settings latencies are taken under, for the block only: ``threads`` intra-op
    threads in torch and the allocator policy of :mod:`hant.latency.allocator`; both are handed back
    on leaving."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with keep_freed_memory():
            yield
    finally:
        torch.set_num_threads(before)


def _compile_limits(n_items: int) -> contextlib.AbstractContextManager:
    """Let dynamo compile every item (instances of one class share code, so each counts as a
    recompile) and fail loudly rather than fall back to eager past the limit."""
    limit = max(8, 2 * n_items)
    return torch._dynamo.config.patch(
        cache_size_limit=limit, accumulated_cache_size_limit=max(256, limit), fail_on_recompile_limit_hit=True
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _calibrate(runner: Runner, warmup: int, min_sample_s: float) -> int:
    """Warm ``runner`` up and return the inner-loop count that makes one sample last ``min_sample_s``.

    First calls are often slow (allocations, kernel selection), so the count is re-estimated on
    ever longer samples until one of them is long enough.
    """
    for _ in range(max(1, warmup)):
        runner.time(1)
    inner = 1
    for _ in range(8):
        elapsed = runner.time(inner)
        if elapsed >= 0.8 * min_sample_s or inner >= MAX_INNER:
            break
        inner = max(min(MAX_INNER, 2 * inner), _inner_for(elapsed / inner, min_sample_s))
    return inner


def _inner_for(per_call_s: float, min_sample_s: float) -> int:
    if per_call_s <= 0.0:
        return MAX_INNER
    return max(1, min(MAX_INNER, math.ceil(min_sample_s / per_call_s)))


@dataclass(frozen=True)
class Timing:
    """When interleaved rounds stop, shared by :func:`measure` and :func:`time_runners` (their keyword
    arguments are these fields)."""

    rel_precision: float = 0.02
    """Stop once every median's confidence interval is within this fraction of it."""
    min_reps: int = 8
    """Rounds always taken."""
    max_reps: int = 300
    """Rounds taken at most."""
    time_budget_s: float = MEASURE_TIME_BUDGET_S
    """Seconds of timed rounds after which no new round starts. Building (export, quantization,
    compilation) and warm-up come before and do not count: an int8 profile of hundreds of blocks
    builds for many minutes, and a budget that counted them left every block only ``min_reps``
    rounds (efficientnet_b0 in OpenVINO int8: 479 entries, 8 rounds each, the worst at +-85 %)."""
    min_time_s: float = 0.0
    """Seconds of timed rounds taken at least, even once every median has converged."""
    warmup: int = 5
    """Untimed calls of every item before calibration."""
    min_sample_ms: float = 2.0
    """One sample averages enough calls to last this long."""
    confidence: float = 0.95
    """Confidence of the median's interval."""
    seed: int = 0
    """Seed of the order items are timed in within a round."""

    def __post_init__(self) -> None:
        if not self.rel_precision > 0.0:
            raise LatencyError(f"rel_precision must be positive, not {self.rel_precision}")
        if not 1 <= self.min_reps <= self.max_reps:
            raise LatencyError(f"need 1 <= min_reps <= max_reps, got min_reps={self.min_reps}, max_reps={self.max_reps}")
        if self.warmup < 0:
            raise LatencyError(f"warmup must be zero or more calls, not {self.warmup}")
        if not 0.0 <= self.min_time_s <= self.time_budget_s:
            raise LatencyError(
                f"need 0 <= min_time_s <= time_budget_s, got min_time_s={self.min_time_s}, "
                f"time_budget_s={self.time_budget_s}"
            )
        if not 0.5 <= self.confidence < 1.0:
            raise LatencyError(f"confidence must lie in [0.5, 1), not {self.confidence}")


def _unique(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LatencyError(f"item name {name!r} is given twice to measure(); give every item a unique name")
        seen.add(name)


def measure(
    items: Sequence[tuple[str, nn.Module, tuple[int, ...]]],
    target: LatencyTarget,
    *,
    on_round: Callable[[int, int], None] | None = None,
    plans: Mapping[str, PrecisionPlan] | None = None,
    calibration: Mapping[str, np.ndarray] | None = None,
    **timing: Any,
) -> dict[str, LatencyStat]:
    """Measure the forward latency of each ``(name, module, per-sample input shape)`` on ``target``.

    The input is ``torch.randn(target.batch_size, *shape)`` on the target's device, dtype and memory
    format; modules run in eval mode under ``torch.inference_mode()`` inside :func:`measuring` with
    ``target.threads`` threads (the caller's modules keep their device, dtype and training flags).
    ``timing`` takes the fields of :class:`Timing` (when rounds stop; ``time_budget_s`` counts the
    timed rounds only, after every item is built and warmed up). Each sample averages enough calls
    to last ``min_sample_ms``; stats are in ms per call. ``on_round(converged, total)`` is called after every round.
    ``plans`` gives an item's precision per module path (default: all of it in ``target.dtype``), and
    ``calibration`` an item's real per-sample inputs, which int8 quantization calibrates on (required
    for every item whose plan has int8). Returns name -> LatencyStat in the order of ``items``.
    """
    options = Timing(**timing)
    names = [name for name, _, _ in items]
    _unique(names)
    check_target(target)
    if not items:
        return {}
    modes = [training_modes(module) for _, module, _ in items]
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(measuring(target.threads))
            if target.backend == "torch_compile":
                stack.enter_context(_compile_limits(len(items)))
            workdir = None
            if target.exports_onnx:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hant-onnx-")))
            runners: list[Runner] = []
            plans, calibration = plans or {}, calibration or {}
            for i, (name, module, shape) in enumerate(items):
                prepared = prepare_module(module, target)
                onnx_path = workdir / f"item{i}.onnx" if workdir is not None else None
                runners.append(
                    build_runner(prepared, tuple(shape), target, onnx_path, name, plans.get(name), calibration.get(name))
                )
            stack.enter_context(torch.inference_mode())
            samples = _timed_rounds(names, runners, options, on_round)
    finally:
        for m in modes:
            restore_modes(m)
    return {name: LatencyStat.of_samples(xs) for name, xs in zip(names, samples)}


def time_runners(runners: Mapping[str, Runner], threads: int, **timing: Any) -> dict[str, LatencyStat]:
    """Interleaved rounds over ready runners (e.g. a deployment artifact loaded in its runtime) inside
    :func:`measuring` with ``threads`` threads; ``timing`` takes the fields of :class:`Timing`, as for
    :func:`measure`. The caller sets the modules' modes. Returns name -> LatencyStat."""
    options = Timing(**timing)
    names = list(runners)
    _unique(names)
    with measuring(threads), torch.inference_mode():
        samples = _timed_rounds(names, [runners[n] for n in names], options, None)
    return {name: LatencyStat.of_samples(xs) for name, xs in zip(names, samples)}


def _timed_rounds(
    names: list[str],
    runners: list[Runner],
    options: Timing,
    on_round: Callable[[int, int], None] | None,
) -> list[list[float]]:
    """Warm-up and calibration, then interleaved rounds (the clock of ``time_budget_s`` and
    ``min_time_s`` starts at the first); returns per-item samples in ms per call."""
    rel_precision, confidence, max_reps = options.rel_precision, options.confidence, options.max_reps
    inner = []
    for name, runner in zip(names, runners):
        try:
            inner.append(_calibrate(runner, options.warmup, options.min_sample_ms / 1e3))
        except Exception as e:  # a candidate that cannot run: name it instead of a bare traceback
            raise LatencyError(
                f"{name} failed to run on the measurement input ({type(e).__name__}: {str(e)[:200]}); "
                "check that its input shape matches the module"
            ) from e
    n = len(runners)
    t_start = time.perf_counter()
    samples: list[list[float]] = [[] for _ in range(n)]
    widths = [math.inf] * n
    order = list(range(n))
    rng = random.Random(options.seed)
    rounds = 0
    last_round_s = 0.0
    stop_reason = f"max_reps={max_reps}"
    with _gc_paused():
        while rounds < max_reps:
            if rounds >= options.min_reps:
                if all(w <= rel_precision for w in widths) and time.perf_counter() - t_start >= options.min_time_s:
                    stop_reason = ""
                    break
                if time.perf_counter() - t_start + last_round_s > options.time_budget_s:
                    stop_reason = f"time_budget_s={options.time_budget_s:g}"
                    break
            t_round = time.perf_counter()
            rng.shuffle(order)
            for i in order:
                samples[i].append(runners[i].time(inner[i]) / inner[i] * 1e3)
            last_round_s = time.perf_counter() - t_round
            rounds += 1
            widths = [relative_ci_halfwidth(sorted(xs), confidence) for xs in samples]
            if on_round is not None:
                on_round(sum(w <= rel_precision for w in widths), n)
    elapsed = time.perf_counter() - t_start
    if all(w <= rel_precision for w in widths):  # converged, and stopped by the cap on rounds or time only
        stop_reason = ""
    if stop_reason:
        loose = [i for i in range(n) if widths[i] > rel_precision]
        worst = max(loose, key=lambda i: widths[i])
        log.warning(
            "%d of %d latencies did not reach +-%.1f%% after %d rounds (stopped by %s; worst: %s at +-%.1f%%); "
            "raise time_budget_s or max_reps for tighter numbers",
            len(loose), n, 100 * rel_precision, rounds, stop_reason, names[worst], 100 * widths[worst],
        )
    log.info("measured %d item(s) in %d round(s) over %.1f s", n, rounds, elapsed)
    return samples
