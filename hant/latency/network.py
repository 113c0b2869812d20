"""Whole-network latency tables: every slot option, the part outside the slots, and a calibration.

The part outside the slots (stem, head, glue between slots) is measured directly, as the network
with every slot replaced by a stub that returns a stored tensor of the slot's output shape. A
prediction is that part plus the chosen options' latencies, corrected by a :class:`Calibration`
fitted on the network itself and a few random variants of it, measured end to end.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..deploy.plan import PrecisionPlan, with_precision
from ..errors import LatencyError
from ..io import hash_obj
from ..slots import set_submodule
from .cache import LatencyCache
from .calibration import fit_calibration
from .fingerprint import device_fingerprint
from .measure import MEASURE_TIME_BUDGET_S
from .table import LatencyTable, ModuleOrFactory, profile
from .target import LatencyTarget

OUTSIDE_SUFFIX = ":outside-slots"
CALIBRATION_NETWORKS = 24
"""Default number of random students measured end to end (besides the teacher) for the calibration.

The table's absolute level rests on these networks, and on the development VM a network timed in a
run of 7 measured 3 % slower (median) than the same network in a run of 31 (paired runs alternating
in one process; ``benchmarks/latency_run_size.py``). With 6, the batch-1 fidelity benchmark
predicted students 4 % too slow on average and met ``within_10pct >= 0.9`` in 8 of 13 runs; with
24, in 5 of 5 at batch 1 and 3 of 3 at batch 8 (mean error -4.2 to +2.2 %). The extra points also
pin the fitted line down over a wider range of students."""
CALIBRATION_TIME_S = 0.0
"""Default seconds the whole networks are timed for at least (see :func:`profile_network`)."""


@dataclass(frozen=True)
class SlotOptions:
    """One slot of a network and the modules that may fill it (``options[0]``: the network's own block)."""

    path: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    options: tuple[tuple[str, ModuleOrFactory], ...]
    """(uid, module or factory building it) pairs; uids are the latency cache's keys."""


class SlotStub(nn.Module):
    """Stands in for a slot at (almost) no cost: returns a stored tensor of the slot's output shape.

    With ``tie_input`` the output also depends on one element of the input, so that graph compilers
    (ONNX export, torch.compile) keep the layers feeding the slot instead of pruning them as dead.
    """

    def __init__(self, out: torch.Tensor, tie_input: bool):
        super().__init__()
        self.register_buffer("out", out)
        self.tie_input = tie_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tie_input:
            return self.out + 0 * x[(0,) * x.dim()]
        return self.out


def outside_slots(model: nn.Module, slots: Sequence[SlotOptions], target: LatencyTarget) -> nn.Module:
    """A copy of ``model`` whose slots are :class:`SlotStub`\\ s: timing it times only the rest."""
    stripped = copy.deepcopy(model)
    tie = target.backend != "torch"
    generator = torch.Generator().manual_seed(0)
    for slot in slots:
        out = torch.randn(target.batch_size, *slot.out_shape, generator=generator)
        set_submodule(stripped, slot.path, SlotStub(out, tie))
    return stripped


def assemble(model: nn.Module, slots: Sequence[SlotOptions], choice: Sequence[int]) -> nn.Module:
    """A copy of ``model`` with slot ``i`` filled by its option ``choice[i]`` (0 keeps the block)."""
    net = copy.deepcopy(model)
    for slot, k in zip(slots, choice):
        if k == 0:
            continue
        uid, obj = slot.options[k]
        module = obj if isinstance(obj, nn.Module) else obj()
        if not isinstance(module, nn.Module):
            raise LatencyError(f"the factory of {uid!r} returned {type(module).__name__}, not an nn.Module")
        set_submodule(net, slot.path, module)
    return net


def calibration_choices(slots: Sequence[SlotOptions], n: int, seed: int = 0) -> list[tuple[int, ...]]:
    """``n`` random variants spanning the latency range: variant ``j`` keeps each block with
    probability falling from 0.75 to 0 and otherwise draws a uniformly random option."""
    rng = random.Random(seed)
    out = []
    for j in range(n):
        keep_p = 0.75 * (1 - j / max(1, n - 1))
        out.append(tuple(0 if rng.random() < keep_p else rng.randrange(len(s.options)) for s in slots))
    return out


def calibration_precisions(slots: Sequence[SlotOptions], n: int, precisions: Sequence[str], seed: int = 0) -> list[tuple[str, ...]]:
    """Per calibration variant, a precision per slot: uniform ones first (one variant each, so the
    calibration sees whole networks in every precision), then uniformly random per-slot mixes, so that the
    cost of switching precision between neighbouring slots, which no single block's latency contains, is in
    the whole networks the calibration is fitted on."""
    rng = random.Random(seed + 1)
    out: list[tuple[str, ...]] = []
    for j in range(n):
        if j < len(precisions):
            out.append(tuple(precisions[j] for _ in slots))
        else:
            out.append(tuple(rng.choice(list(precisions)) for _ in slots))
    return out


def fast_choices(slots: Sequence[SlotOptions], latency_ms: Mapping[str, float], n: int,
                 seed: int = 0) -> list[tuple[int, ...]]:
    """``n`` variants in the region the search picks from, well below the network's own latency:
    variant ``j`` fills each slot with a uniformly random option among those in ``latency_ms`` that
    take at most ``f_j`` times the slot's own block, ``f_j`` falling from 0.8 to 0.2 (the slot's
    fastest timed option where none is that fast)."""
    rng = random.Random(seed)
    out = []
    for j in range(n):
        fraction = 0.8 - 0.6 * j / max(1, n - 1)
        choice = []
        for slot in slots:
            timed = [(k, latency_ms[uid]) for k, (uid, _) in enumerate(slot.options) if uid in latency_ms]
            limit = fraction * latency_ms[slot.options[0][0]]
            fast = [k for k, ms in timed if ms <= limit] or [min(timed, key=lambda t: t[1])[0]]
            choice.append(rng.choice(fast))
        out.append(tuple(choice))
    return out


def option_uid(slot: SlotOptions, k: int, precision: str, default: str) -> str:
    """Latency-table key of option ``k`` of ``slot`` run in ``precision`` (the uid itself at the default)."""
    return with_precision(slot.options[k][0], precision, default)


def network_uid(base: str, slots: Sequence[SlotOptions], choice: Sequence[int], precisions: Sequence[str] | None = None,
                default: str = "") -> str:
    """Cache key of one assembled variant of the network ``base`` (with its per-slot precisions)."""
    precisions = precisions or [default] * len(slots)
    return f"{base}:variant:{hash_obj([option_uid(s, k, p, default) for s, k, p in zip(slots, choice, precisions)])}"


def network_plan(slots: Sequence[SlotOptions], precisions: Sequence[str], default: str) -> PrecisionPlan:
    """The precision plan of a network whose slot ``i`` runs in ``precisions[i]``."""
    return PrecisionPlan.of(default, {s.path: p for s, p in zip(slots, precisions)})


def raw_prediction_ms(table: LatencyTable, slots: Sequence[SlotOptions], choice: Sequence[int], outside_ms: float,
                      precisions: Sequence[str] | None = None) -> float:
    """Outside-slot part plus the chosen options' measured latencies and the measured transition cost of
    every slot run outside the table's precision, uncorrected."""
    default = table.target.dtype
    precisions = precisions or [default] * len(slots)
    transitions = table.extra.get("transitions_ms", {})
    return outside_ms + sum(
        table.measured_ms(option_uid(s, k, p, default)) + (transitions.get(f"{s.path}@{p}", 0.0) if p != default else 0.0)
        for s, k, p in zip(slots, choice, precisions)
    )


def transition_precisions(slots: Sequence[SlotOptions], precisions: Sequence[str], default: str) -> list[tuple[str, ...]]:
    """Per slot and precision other than ``default``: the network's precisions with only that slot
    switched (its teacher block kept), whose end-to-end latency gives the slot's transition cost."""
    out = []
    for i in range(len(slots)):
        for p in precisions:
            if p != default:
                out.append(tuple(p if j == i else default for j in range(len(slots))))
    return out


def transition_costs(table: LatencyTable, slots: Sequence[SlotOptions], switched: Sequence[tuple[str, ...]],
                     switched_ms: Sequence[float], teacher_ms: float) -> dict[str, float]:
    """``slot_path@precision`` -> the measured network with only that slot switched, minus the teacher,
    minus the teacher block's own difference between the two precisions in the table: what the block
    timed alone does not show (quantize/dequantize at its borders, the neighbours' lost fusion)."""
    default = table.target.dtype
    out = {}
    for ps, ms in zip(switched, switched_ms):
        i, p = next((j, q) for j, q in enumerate(ps) if q != default)
        block_delta = table.measured_ms(option_uid(slots[i], 0, p, default)) - table.measured_ms(option_uid(slots[i], 0, default, default))
        out[f"{slots[i].path}@{p}"] = ms - teacher_ms - block_delta
    return out


def profile_network(
    model: nn.Module,
    input_shape: tuple[int, ...],
    slots: Sequence[SlotOptions],
    target: LatencyTarget,
    cache: LatencyCache | None,
    *,
    base_uid: str,
    calibration_networks: int = CALIBRATION_NETWORKS,
    calibration_time_s: float = CALIBRATION_TIME_S,
    fast_calibration_networks: int = 0,
    only: set[str] | None = None,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    precisions: Sequence[str] = (),
    calibration: np.ndarray | None = None,
    slot_calibration: Mapping[str, np.ndarray] | None = None,
    **measure_kwargs: Any,
) -> tuple[LatencyTable, int]:
    """Measure (or read from ``cache``) every option, the part outside the slots, ``model`` itself and
    ``calibration_networks`` random variants; fit the calibration. Options and the outside part are
    timed interleaved in one run, the whole networks interleaved in a second that lasts at least
    ``calibration_time_s`` (at most the time budget): their medians converge in 3-7 s, but the
    table's absolute level rests on them, and a shared machine's speed wanders over tens of seconds.

    ``fast_calibration_networks`` more variants are drawn by :func:`fast_choices` from the options
    once they are timed, so that the calibration also spans students as fast as the search returns.
    ``only`` restricts the options measured (besides those the calibration variants use) to these
    uids. ``base_uid`` names ``model`` in the cache; it must change whenever the model does.
    ``precisions`` are the per-slot precisions besides ``target.dtype``: every option is also measured
    in each (table key ``uid@precision``, :func:`option_uid`), and the calibration variants mix them.
    ``calibration`` (real per-sample network inputs) and ``slot_calibration`` (slot path -> the teacher's
    real inputs of that slot) are what int8 quantization calibrates on.
    With such precisions the teacher is also measured once per slot and precision with only that
    slot switched, which gives each slot's transition cost (:func:`transition_costs`,
    ``extra["transitions_ms"]``, :meth:`LatencyTable.transition_ms`): a float32 block between int8
    neighbours costs a network more than the block timed alone (24 % over its prediction for the demo's
    first mixed selection in OpenVINO), and a calibration line cannot tell which slots cause it.
    Returns the table and the number of cache hits. ``table.extra`` holds ``teacher_ms`` (``model``
    measured), ``fixed_ms`` (the corrected outside-slot term: the calibration applied to it, negative
    where the calibration's offset exceeds it, as for OpenVINO int8 at batch 8; clamped at zero it put
    every search student there 19-37 % too slow), ``block_scale``, ``outside_raw_ms``,
    ``calibration`` and ``transitions_ms``.
    """
    if not slots:
        raise LatencyError("the network has no slots to profile")
    default = target.dtype
    all_precisions = [default, *(p for p in dict.fromkeys(precisions) if p != default)]
    for p in all_precisions[1:]:
        PrecisionPlan.of(default, {slots[0].path: p})  # a mix this runtime cannot run fails here, before measuring
    variants = calibration_choices(slots, calibration_networks, seed)
    variant_precisions = calibration_precisions(slots, calibration_networks, all_precisions, seed) if len(all_precisions) > 1 \
        else [tuple(default for _ in slots)] * len(variants)
    used = {option_uid(s, k, p, default) for v, ps in zip(variants, variant_precisions) for s, k, p in zip(slots, v, ps)}
    used |= {option_uid(s, 0, p, default) for s in slots for p in all_precisions}
    outside_uid = base_uid + OUTSIDE_SUFFIX
    parts: list[tuple[str, ModuleOrFactory, tuple[int, ...]]] = [
        (outside_uid, lambda: outside_slots(model, slots, target), input_shape)
    ]
    plans: dict[str, PrecisionPlan] = {}
    samples: dict[str, np.ndarray] = {}
    if calibration is not None:
        samples[outside_uid] = calibration
    for slot in slots:
        for k, (uid, obj) in enumerate(slot.options):
            for p in all_precisions:
                key = option_uid(slot, k, p, default)
                if only is None or uid in only or key in used:
                    parts.append((key, obj, slot.in_shape))
                    plans[key] = PrecisionPlan(p)
                    if slot_calibration is not None and slot.path in slot_calibration:
                        samples[key] = slot_calibration[slot.path]
    total = len(parts) + 1 + len(variants) + max(0, fast_calibration_networks) + (len(all_precisions) - 1) * len(slots)

    def progress(offset: int) -> Callable[[int, int], None] | None:
        return None if on_progress is None else lambda done, _: on_progress(offset + done, total)

    # Whole networks are timed in a run of their own, as a network is timed end to end (among
    # networks, not among hundreds of small blocks), so the calibration maps one to the other.
    deploy_kwargs = {"plans": plans, "calibration": samples}
    stats, hits = profile(parts, target, cache, on_progress=progress(0), **deploy_kwargs, **measure_kwargs)
    timed = {uid: stat.median_ms for uid, stat in stats.items()}
    fast = fast_choices(slots, timed, max(0, fast_calibration_networks), seed)  # in the default precision
    variants += fast
    variant_precisions += [tuple(default for _ in slots)] * len(fast)
    switched = transition_precisions(slots, all_precisions, default)
    keep = tuple(0 for _ in slots)
    networks: list[tuple[str, ModuleOrFactory, tuple[int, ...]]] = [(base_uid, model, input_shape)]
    network_keys = [base_uid]
    for v, ps in [*zip(variants, variant_precisions), *((keep, ps) for ps in switched)]:
        uid = network_uid(base_uid, slots, v, ps, default)
        networks.append((uid, lambda v=v: assemble(model, slots, v), input_shape))
        network_keys.append(uid)
        plans[uid] = network_plan(slots, ps, default)
    if calibration is not None:
        samples.update({uid: calibration for uid in network_keys})
    budget = measure_kwargs.get("time_budget_s", MEASURE_TIME_BUDGET_S)
    net_kwargs = {**measure_kwargs, "min_time_s": min(max(0.0, calibration_time_s), budget)}
    net_stats, net_hits = profile(networks, target, cache, on_progress=progress(len(parts)), **deploy_kwargs, **net_kwargs)
    stats.update(net_stats)
    hits += net_hits

    table = LatencyTable(target, device_fingerprint(target), dict(stats))
    switched_keys = network_keys[1 + len(variants):]
    table.extra["transitions_ms"] = transition_costs(
        table, slots, switched, [stats[uid].median_ms for uid in switched_keys], stats[base_uid].median_ms
    )
    outside_ms = stats[outside_uid].median_ms
    uniform_default = tuple(default for _ in slots)
    points = [(keep, uniform_default, base_uid), *zip(variants, variant_precisions, network_keys[1 : 1 + len(variants)])]
    predicted = [raw_prediction_ms(table, slots, v, outside_ms, ps) for v, ps, _ in points]
    measured = [stats[uid].median_ms for _, _, uid in points]
    cal = fit_calibration(predicted, measured)
    table.extra.update(
        {
            "teacher_uid": base_uid,
            "teacher_ms": stats[base_uid].median_ms,
            "outside_raw_ms": outside_ms,
            "slots_ms": predicted[0] - outside_ms,
            "fixed_ms": cal.apply(outside_ms),
            "block_scale": cal.scale,
            "calibration": cal.to_dict(),
            "precisions": all_precisions,
        }
    )
    # The table's own sum, bit for bit what the search computes for the all-keep selection, so that a
    # budget of exactly this admits the teacher (cal.apply(predicted[0]) can differ by an ulp).
    table.extra["teacher_predicted_ms"] = table.predict_ms(s.options[0][0] for s in slots)
    return table, hits
