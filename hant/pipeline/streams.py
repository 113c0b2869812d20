"""Stream widths in a HANT run: what the op zoo's ``stream_cut`` family needs from the stages.

A recipe that names ``stream_cut`` lets the integer program narrow residual streams, as the pruners
do. Then (1) the teacher stage stores the teacher with each stream's channels sorted by importance
(the same function), so a stream cut to ``n`` keeps its ``n`` most important channels in every block;
(2) the profile stage times every ``stream_cut`` candidate as it deploys (the cut block alone, at its
cut input) and the part of the network outside the slots at every width of the streams it touches,
in one interleaved run whose teacher blocks and full outside part, timed beside them, carry the
whole-network calibration over; (3) the program gets one slot per stream (its width) and one for the
outside part, and links every candidate to the widths it assumes (``hant.search.linking``);
(4) the student is the teacher cut to the chosen widths with the chosen blocks in it.

Scores: a ``stream_cut`` candidate is scored swapped into the full-width teacher with the teacher's
values in the stream channels it drops, so it carries only its own damage on the channels it keeps;
each stream's slot carries the damage of its width once (:func:`stream_records`, the teacher with that
stream cut after a linear adaptation, ``hant.distill.stream_scores``); the outside slot carries
latency only.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import statistics
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..config import DistillConfig, Recipe
from ..deploy import PrecisionPlan, with_precision
from ..distill.layerwise import CandidateRecord, distill_device, search_score
from ..distill.stream_scores import score_streams
from ..errors import SearchError
from ..latency import LatencyCache, LatencyTable, LatencyTarget, profile
from ..latency.network import OUTSIDE_SUFFIX
from ..ops_zoo import CandidateSpec, build_candidate
from ..ops_zoo.families.stream_cut import STREAM_FAMILY, cut_in_shape
from ..pruning.space import OUTSIDE_SLOT, STREAM_PREFIX, PruneSpace
from ..pruning.streams import StreamLayout
from ..search import CandidateCost, Problem, SlotChoices
from ..search.linking import Link, linked_problem
from ..slots import Slot, discover_slots, get_submodule

__all__ = [
    "OUTSIDE_SLOT", "STREAM_PREFIX", "admissible_zoo", "offered_widths", "profile_streams", "reordered_teacher",
    "stream_counts", "stream_problem", "stream_records", "uses_stream_widths", "width_scores",
]

_ANCHOR = ":stream-anchor"


def uses_stream_widths(recipe: Recipe) -> bool:
    """Whether the recipe's zoo offers stream-width candidates."""
    return STREAM_FAMILY in recipe.zoo.families


def reordered_teacher(model: nn.Module, example: torch.Tensor, patterns: Sequence[str] | None) -> nn.Module:
    """The teacher with every stream sorted by importance, traced with the slots the slots stage will find."""
    slots = discover_slots(model, example, list(patterns) if patterns else None)
    return StreamLayout.trace(model, tuple(example.shape[1:]), [s.path for s in slots]).reordered(model).eval()


def _width(spec: CandidateSpec, side: str, slot: Slot) -> int:
    if spec.family == STREAM_FAMILY:
        return int(spec.params[side])
    return int((slot.in_shape if side == "inp" else slot.out_shape)[0])


def _sides(layout: StreamLayout, slot: Slot) -> list[tuple[str, str]]:
    """(stream, side) pairs of a slot: ``inp`` for the stream it reads, ``out`` for one it writes besides."""
    g_in, g_out = layout.slot_streams(slot.path)
    return [(g, "inp") for g in [g_in] if g] + [(g, "out") for g in [g_out] if g and g != g_in]


def admissible_zoo(zoo: Mapping[str, list[CandidateSpec]], slots: Sequence[Slot],
                   layout: StreamLayout) -> dict[str, list[CandidateSpec]]:
    """``zoo`` without the ``stream_cut`` candidates the network cannot link: those narrowing a side
    of a slot that is not one prunable stream, or giving one stream two widths."""
    def linkable(spec: CandidateSpec, slot: Slot) -> bool:
        if spec.family != STREAM_FAMILY:
            return True
        g_in, g_out = layout.slot_streams(slot.path)
        if spec.params["inp"] < slot.in_shape[0] and g_in is None:
            return False
        if spec.params["out"] < slot.out_shape[0] and g_out is None:
            return False
        return not (g_in is not None and g_in == g_out and spec.params["inp"] != spec.params["out"])

    return {slot.name: [spec for spec in zoo[slot.name] if linkable(spec, slot)] for slot in slots}


def _stream_specs(zoo: Mapping[str, list[CandidateSpec]], slot: Slot) -> list[CandidateSpec]:
    return [s for s in zoo[slot.name] if s.family == STREAM_FAMILY]


def offered_widths(specs: Mapping[str, Sequence[CandidateSpec]], slots: Sequence[Slot],
                   layout: StreamLayout) -> dict[str, set[int]]:
    """Stream -> every width that some slot's candidate in ``specs`` assumes for it, the full one included."""
    widths = {g: {layout.width(g)} for g in layout.streams()}
    for slot in slots:
        for g, side in _sides(layout, slot):
            widths[g] |= {_width(spec, side, slot) for spec in specs[slot.name]}
    return widths


def stream_records(teacher: nn.Module, layout: StreamLayout, slots: Sequence[Slot],
                   zoo: Mapping[str, list[CandidateSpec]], fit_loader, val_loader, cfg: DistillConfig,
                   teacher_accuracy: float) -> dict[str, dict[str, CandidateRecord]]:
    """``stream:<group>`` -> kept channels (as text) -> the score record of the teacher with that stream cut
    to them (:func:`hant.distill.stream_scores.score_streams`, its predictions fitted on ``fit_loader``);
    the full width is the teacher itself."""
    device = distill_device(cfg.device)
    on_device = copy.deepcopy(teacher).to(device).eval()
    widths = offered_widths(zoo, slots, layout)
    scored = score_streams(on_device, layout, slots, widths, fit_loader, val_loader, device)
    out: dict[str, dict[str, CandidateRecord]] = {}
    for g, ns in widths.items():
        name = STREAM_PREFIX + g
        full = CandidateRecord(name, str(layout.width(g)), f"{g}={layout.width(g)}", "exact", 0.0, feature_loss=0.0,
                               swap_kl=0.0, swap_accuracy=teacher_accuracy)
        records = {full.key: full}
        for n, sc in scored.get(g, {}).items():
            records[str(n)] = CandidateRecord(name, str(n), f"{g}={n}", "ok", feature_loss=sc.feature_loss,
                                              swap_kl=sc.swap_kl, swap_accuracy=sc.swap_accuracy)
        for rec in records.values():
            rec.score = search_score(rec, cfg.score)
        if len(ns) > 1:
            out[name] = records
    return out


def width_scores(scores: Mapping[str, Mapping[str, Mapping]], layout: StreamLayout,
                 score_of: Callable[[Mapping], float | None], floor: bool = False) -> dict[str, dict[int, float]]:
    """Stream -> width -> ``score_of`` of its record in ``scores`` (``scores.json``), less the full width's;
    with ``floor`` no narrower width scores below the full one."""
    out: dict[str, dict[int, float]] = {}
    for g in layout.streams():
        records = scores.get(STREAM_PREFIX + g, {})
        full = records.get(str(layout.width(g)))
        base = score_of(full) if full is not None else None
        out[g] = {int(n): max(value - base, 0.0) if floor else value - base for n, rec in records.items()
                  if base is not None and rec["status"] == "ok" and (value := score_of(rec)) is not None}
    return out


def _outside_widths(zoo: Mapping[str, list[CandidateSpec]], slots: Sequence[Slot], layout: StreamLayout) -> dict[str, list[int]]:
    """Per stream the part outside the slots touches: the widths the slots' candidates offer, full first."""
    offered = offered_widths(zoo, slots, layout)
    return {g: sorted(offered[g], reverse=True) for g in layout.outside_streams()}


def _combo_key(counts: Mapping[str, int]) -> str:
    return ",".join(f"{g}={counts[g]}" for g in sorted(counts)) or "teacher"


def _outside_network(teacher: nn.Module, slots: Sequence[Slot], layout: StreamLayout, counts: Mapping[str, int],
                     target: LatencyTarget) -> nn.Module:
    """The teacher cut to the stream widths ``counts`` with its slots stubbed, as the pruners time it."""
    return PruneSpace(layout.graph, list(slots), (1.0,)).outside_network(teacher, counts, target)


def profile_streams(
    teacher: nn.Module, input_shape: tuple[int, ...], slots: Sequence[Slot], layout: StreamLayout,
    zoo: Mapping[str, list[CandidateSpec]], table: LatencyTable, target: LatencyTarget, calibration: np.ndarray | None = None,
    slot_calibration: Mapping[str, np.ndarray] | None = None, **measure_kwargs,
) -> int:
    """Time every ``stream_cut`` candidate (in every precision of ``table``) and the outside part at every
    combination of its streams' widths, beside the teacher's blocks and full outside part, into ``table``:
    candidates as their measured median times the run's drift (the median ratio of the table's teacher
    blocks to the same blocks here), and ``extra["stream_outside_ms"]`` (combination -> the table's
    outside term less the fraction of it the cut saves here). Returns the cache hits."""
    default = target.dtype
    precisions = table.extra.get("precisions", [default])
    base = table.extra["teacher_uid"]
    parts, plans, samples = [], {}, {}

    def add(key: str, obj, shape: tuple[int, ...], precision: str, sample: np.ndarray | None) -> None:
        parts.append((key, obj, tuple(shape)))
        plans[key] = PrecisionPlan(precision)
        if sample is not None:
            samples[key] = sample

    anchors = {}
    for slot in slots:
        block = get_submodule(teacher, slot.path)
        inputs = None if slot_calibration is None else slot_calibration.get(slot.path)
        keep = zoo[slot.name][0]
        add(keep.uid + _ANCHOR, block, slot.in_shape, default, inputs)
        anchors[keep.uid + _ANCHOR] = keep.uid
        for spec in _stream_specs(zoo, slot):
            sample = None if inputs is None else np.ascontiguousarray(inputs[:, : spec.params["inp"]])
            for p in precisions:
                factory = lambda spec=spec, block=block: build_candidate(spec, block).inner
                add(with_precision(spec.uid, p, default), factory, cut_in_shape(spec), p, sample)
    widths = _outside_widths(zoo, slots, layout)
    combos = [dict(zip(widths, c)) for c in itertools.product(*widths.values())]
    full_key = base + OUTSIDE_SUFFIX + _ANCHOR
    outside_keys = {}
    for counts in combos:
        key = full_key if all(n == layout.width(g) for g, n in counts.items()) else f"{base}:outside:{_combo_key(counts)}"
        outside_keys[_combo_key(counts)] = key
        add(key, lambda counts=counts: _outside_network(teacher, slots, layout, counts, target), input_shape, default, calibration)
    stats, hits = profile(parts, target, LatencyCache(), plans=plans, calibration=samples, **measure_kwargs)
    drift = statistics.median(table.measured_ms(uid) / stats[key].median_ms for key, uid in anchors.items())
    for key, stat in stats.items():
        if key not in anchors and key not in outside_keys.values():
            table.entries[key] = dataclasses.replace(stat, median_ms=stat.median_ms * drift)
    fixed, scale, raw = table.extra["fixed_ms"], table.extra["block_scale"], table.extra["outside_raw_ms"]
    full_ms = stats[full_key].median_ms
    table.extra["stream_outside_ms"] = {
        combo: fixed - scale * raw * (1.0 - stats[key].median_ms / full_ms) for combo, key in outside_keys.items()
    }
    table.extra["stream_drift"] = drift
    return hits


def stream_problem(problem: Problem, specs: Mapping[str, Sequence[CandidateSpec]], slots: Sequence[Slot],
                   layout: StreamLayout, table: LatencyTable,
                   stream_scores: Mapping[str, Mapping[int, float]]) -> Problem:
    """``problem`` (whose slot ``s`` has one candidate per ``specs[s]``, in order) with a slot per stream
    choosing its width, scored by ``stream_scores`` (stream -> width -> score, relative to the full
    width; every narrower width the candidates offer must have one), the outside part as one more slot,
    and the links that make them agree."""
    if "stream_outside_ms" not in table.extra:
        raise SearchError("the latency table has no stream-width entries; re-run `hant profile` with stream_cut in the zoo")
    links: list[Link] = []
    options = offered_widths(specs, slots, layout)
    for slot in slots:
        for g, side in _sides(layout, slot):
            tags = tuple(str(_width(spec, side, slot)) for spec in specs[slot.name])
            links.append(Link(slot.name, STREAM_PREFIX + g, tags))
    outside, tags_of = [], {g: [] for g in layout.outside_streams()}
    for combo, ms in table.extra["stream_outside_ms"].items():
        counts = {} if combo == "teacher" else {g: int(n) for g, _, n in (p.partition("=") for p in combo.split(","))}
        outside.append(CandidateCost(combo, ms, 0.0))
        for g in tags_of:
            tags_of[g].append(str(counts.get(g, layout.width(g))))
            options[g].add(int(tags_of[g][-1]))
    links += [Link(OUTSIDE_SLOT, STREAM_PREFIX + g, tuple(t)) for g, t in tags_of.items()]
    missing = [f"{g}={n}" for g, ns in options.items() for n in ns
               if n < layout.width(g) and n not in stream_scores.get(g, {})]
    if missing:
        raise SearchError(f"no score for stream width {missing[0]}; re-run `hant distill` with stream_cut in the zoo")

    def score(g: str, n: int) -> float:
        return 0.0 if n == layout.width(g) else float(stream_scores[g][n])

    streams = [SlotChoices(STREAM_PREFIX + g, tuple(CandidateCost(str(n), 0.0, score(g, n))
                                                    for n in sorted(ns, reverse=True)))
               for g, ns in options.items()]
    slots_all = (*problem.slots, SlotChoices(OUTSIDE_SLOT, tuple(outside)), *streams)
    return linked_problem(dataclasses.replace(problem, slots=slots_all, fixed_latency_ms=0.0), links)


def stream_counts(choices: Mapping[str, str], layout: StreamLayout) -> dict[str, int]:
    """Stream -> kept channels of a selection of :func:`stream_problem`."""
    return {g: int(choices[STREAM_PREFIX + g]) for g in layout.streams()}
