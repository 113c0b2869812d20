"""The pruning search space as hant's integer program: per slot, its teacher block with the inner
width and the widths of the streams at its input and output; per stream, a group slot; links.

Every width is a fraction of the teacher's channels from one grid (``fractions``, rounded to
``divisor`` channels: the neuron-group size). A slot's candidate fixes its inner fraction and the
fraction of each stream it touches; the stream's group slot holds the stream's layers outside any
slot (stem, head) and its importance, and links force all slots on a stream to agree with it.
Latencies come from a lookup table measured on the target, in the pipeline's latency model: every
slot's block at each of its candidate widths, and the part outside the slots measured directly (the
network cut to the widths of the streams that reach it, its slots replaced by stubs, as
``hant.latency.network.outside_slots`` does for ``hant run``), one entry per combination of those
stream widths; the outside part is one more slot of the program, linked to its streams. Scores are the
importance each choice removes.

On an int8 target every entry is timed as it deploys: exported, quantized by the target runtime on
the task's own inputs to it (:meth:`PruneSpace.calibration`), compiled.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..distill.capture import SlotCapture
from ..latency import LatencyCache, LatencyTarget, SlotOptions, profile
from ..latency.network import outside_slots
from ..ops_zoo.pruning import pruned_width
from ..errors import InfeasibleBudgetError, SearchError
from ..search import CandidateCost, Problem, SlotChoices, solve
from ..search.linking import Link, linked_problem
from ..slots import Slot, structure_hash
from .apply import first_channels, pruned_copy
from .groups import GroupGraph
from .streams import StreamLayout

__all__ = ["OUTSIDE_SLOT", "PruneSpace", "STREAM_PREFIX", "removed_importance"]

STREAM_PREFIX = "stream:"
OUTSIDE_SLOT = "outside-slots"
"""The program's slot for the part of the network outside the slots (stem, head, glue)."""


def _key(fraction: float) -> str:
    return f"{fraction:g}"


def removed_importance(importance: torch.Tensor, keep: int) -> float:
    """Importance lost when only the ``keep`` most important channels stay."""
    if keep >= importance.numel():
        return 0.0
    return float(importance.sum() - torch.topk(importance, keep).values.sum())


@dataclass
class PruneSpace:
    """Widths every slot and stream may take, and their latencies on the target."""

    graph: GroupGraph
    slots: list[Slot]
    fractions: tuple[float, ...]
    divisor: int = 8
    latency: dict[str, float] = field(default_factory=dict)
    """Lookup table: entry uid → median ms (filled by :meth:`measure`)."""
    teacher_ms: float = 0.0

    def __post_init__(self) -> None:
        if not self.fractions or self.fractions[0] != 1.0 or list(self.fractions) != sorted(self.fractions, reverse=True):
            raise ValueError(f"fractions must start at 1.0 and decrease, got {self.fractions}")

    # -- widths -------------------------------------------------------------------------------
    def count(self, group: str, j: int) -> int:
        """Channels of ``group`` at fraction index ``j``."""
        g = self.graph.groups[group]
        return pruned_width(g.width, self.fractions[j], math.lcm(self.divisor, g.unit))

    def streams(self) -> list[str]:
        return [g.name for g in self.graph.streams()]

    def slot_streams(self, slot: Slot) -> list[str]:
        """The streams at a slot's input and output (one when they are the same)."""
        names = [*self.graph.slot_inputs.get(slot.path, ()), *self.graph.slot_outputs.get(slot.path, ())]
        return [n for n in dict.fromkeys(names) if self.graph.groups[n].is_stream]

    def outside_streams(self) -> list[str]:
        """The streams with layers outside every slot (the stem's output, the head's input)."""
        return StreamLayout(self.graph, [s.path for s in self.slots]).outside_streams()

    def inner(self, slot: Slot) -> list[str]:
        return [g.name for g in self.graph.inner(slot.path)]

    def options(self, group: str, limit: int | None = None) -> list[int]:
        """Fraction indices whose channel count is at most ``limit`` (distinct counts only)."""
        out, seen = [], set()
        for j in range(len(self.fractions)):
            n = self.count(group, j)
            if (limit is None or n <= limit) and n not in seen:
                seen.add(n)
                out.append(j)
        return out

    def slot_candidates(self, slot: Slot, limits: Mapping[str, int] | None = None) -> list[dict[str, int]]:
        """Every (stream fractions, inner fraction) of a slot as group → count, full width first."""
        limits = limits or {}
        streams, inner = self.slot_streams(slot), self.inner(slot)
        stream_opts = [self.options(s, limits.get(s)) for s in streams]
        inner_opts = [j for j in range(len(self.fractions)) if all(self.count(g, j) <= limits.get(g, math.inf) for g in inner)]
        inner_opts = list(dict.fromkeys(inner_opts)) or [len(self.fractions) - 1]
        out = []
        for combo in itertools.product(*stream_opts, inner_opts if inner else [0]):
            counts = {s: self.count(s, j) for s, j in zip(streams, combo)}
            counts.update({g: self.count(g, combo[-1]) for g in inner})
            out.append(counts)
        return out

    def outside_candidates(self, limits: Mapping[str, int] | None = None) -> list[dict[str, int]]:
        """Every combination of the outside streams' widths as stream → count, full width first."""
        limits = limits or {}
        streams = self.outside_streams()
        return [
            {s: self.count(s, j) for s, j in zip(streams, combo)}
            for combo in itertools.product(*(self.options(s, limits.get(s)) for s in streams))
        ]

    def slot_shape(self, slot: Slot, counts: Mapping[str, int], output: bool = False) -> tuple[int, ...]:
        """Per-sample input (or output) shape of a slot whose groups keep ``counts`` channels."""
        shape = list(slot.out_shape if output else slot.in_shape)
        dim = 0 if len(shape) == 3 else len(shape) - 1  # (C, H, W) images; (tokens, C) sequences
        at = (self.graph.slot_outputs if output else self.graph.slot_inputs).get(slot.path, ())
        groups = self.graph.groups
        shape[dim] -= sum(groups[g].width - counts.get(g, groups[g].width) for g in at if not groups[g].fixed)
        return tuple(shape)

    # -- latency lookup table -----------------------------------------------------------------
    def slot_uid(self, slot: Slot, block_hash: str, counts: Mapping[str, int]) -> str:
        widths = ",".join(f"{counts[g]}" for g in sorted(counts))
        return f"prune-block:{block_hash}:{slot.path}:{widths}"

    def teacher_uid(self, teacher_hash: str) -> str:
        return f"prune-teacher:{teacher_hash}"

    def outside_uid(self, teacher_hash: str, counts: Mapping[str, int]) -> str:
        widths = ",".join(f"{g}={counts[g]}" for g in sorted(counts))
        return f"prune-outside:{teacher_hash}:{widths}"

    def _slot_entry(self, teacher: nn.Module, slot: Slot, counts: Mapping[str, int]) -> tuple:
        block = teacher.get_submodule(slot.path)
        factory = lambda: pruned_copy(block, self.graph.groups, first_channels(counts), prefix=slot.path)  # noqa: E731
        return self.slot_uid(slot, structure_hash(block), counts), factory, self.slot_shape(slot, counts)

    def outside_network(self, teacher: nn.Module, counts: Mapping[str, int], target: LatencyTarget) -> nn.Module:
        """The teacher cut to ``counts`` with every slot replaced by a stub of its (cut) output shape."""
        net = pruned_copy(teacher, self.graph.groups, first_channels(counts))
        stubs = [SlotOptions(s.path, s.in_shape, self.slot_shape(s, counts, output=True), ()) for s in self.slots]
        return outside_slots(net, stubs, target)

    def entries(self, teacher: nn.Module, input_shape: tuple[int, ...], target: LatencyTarget | None = None) -> list[tuple]:
        """Lookup-table entries ``(uid, module factory, per-sample input shape)``, the teacher first:
        every slot candidate, and the outside part at every width of its streams."""
        target = target or LatencyTarget()
        teacher_hash = structure_hash(teacher)
        entries = [(self.teacher_uid(teacher_hash), teacher, tuple(input_shape))]
        for slot in self.slots:
            for counts in self.slot_candidates(slot):
                entries.append(self._slot_entry(teacher, slot, counts))
        for counts in self.outside_candidates():
            factory = lambda counts=counts: self.outside_network(teacher, counts, target)  # noqa: E731
            entries.append((self.outside_uid(teacher_hash, counts), factory, tuple(input_shape)))
        return entries

    @torch.no_grad()
    def slot_input(self, teacher: nn.Module, images: np.ndarray, slot: Slot, counts: Mapping[str, int]) -> np.ndarray:
        """The input of ``slot`` on ``images`` in the teacher cut to the widths ``counts`` gives the
        groups at the slot's input (every other group whole): what that block is fed when deployed."""
        at = {g: counts[g] for g in self.graph.slot_inputs.get(slot.path, ()) if g in counts}
        net = pruned_copy(teacher, self.graph.groups, first_channels(at)).eval()
        with SlotCapture(net, [slot]) as capture:
            return capture.run(torch.from_numpy(images))[slot.name][0].float().numpy()

    def calibration(self, teacher: nn.Module, images: np.ndarray) -> dict[str, np.ndarray]:
        """Entry uid -> the real per-sample inputs its int8 quantization calibrates on: ``images`` (the
        task's network inputs) for the teacher and the outside part, and for each slot candidate its
        input in the network cut to the candidate's widths (:meth:`slot_input`)."""
        teacher_hash = structure_hash(teacher)
        out = {self.teacher_uid(teacher_hash): images}
        out.update({self.outside_uid(teacher_hash, counts): images for counts in self.outside_candidates()})
        for slot in self.slots:
            block_hash = structure_hash(teacher.get_submodule(slot.path))
            inputs: dict[tuple, np.ndarray] = {}  # a slot's input depends on the widths at its input only
            for counts in self.slot_candidates(slot):
                key = tuple(counts.get(g) for g in self.graph.slot_inputs.get(slot.path, ()))
                if key not in inputs:
                    inputs[key] = self.slot_input(teacher, images, slot, counts)
                out[self.slot_uid(slot, block_hash, counts)] = inputs[key]
        return out

    def set_latencies(self, teacher: nn.Module, latency_ms: Mapping[str, float], teacher_ms: float) -> None:
        """Fill the lookup table from entry uid → ms (from :meth:`measure`, or a model of latency)."""
        self.latency.update(latency_ms)
        self.teacher_ms = teacher_ms
        self._teacher = teacher

    def measure(self, teacher: nn.Module, input_shape: tuple[int, ...], target: LatencyTarget,
                calibration: np.ndarray | None = None, **kwargs) -> None:
        """Measure every entry on ``target`` (the shared latency cache first) into the lookup table;
        ``calibration`` (the task's per-sample network inputs) is what int8 entries are quantized on,
        required on an int8 target."""
        entries = self.entries(teacher, input_shape, target)
        if calibration is not None:
            kwargs["calibration"] = self.calibration(teacher, calibration)
        stats, _ = profile(entries, target, LatencyCache(), **kwargs)
        self.set_latencies(teacher, {uid: s.median_ms for uid, s in stats.items()}, stats[entries[0][0]].median_ms)

    def slot_ms(self, slot: Slot, counts: Mapping[str, int]) -> float:
        uid = self.slot_uid(slot, structure_hash(self._teacher.get_submodule(slot.path)), counts)
        return self.latency[uid]

    def outside_ms(self, counts: Mapping[str, int]) -> float:
        """The measured part outside the slots at the outside streams' widths in ``counts``."""
        return self.latency[self.outside_uid(structure_hash(self._teacher), {g: counts[g] for g in self.outside_streams()})]

    def full_counts(self) -> dict[str, int]:
        names = set(self.streams()) | {g for s in self.slots for g in self.inner(s)}
        return {g: self.graph.groups[g].width for g in sorted(names)}

    @property
    def predicted_teacher_ms(self) -> float:
        """The lookup table's latency of the unpruned teacher: what budget fractions are fractions of
        (its parts timed alone need not add up to the teacher measured whole, :attr:`teacher_ms`)."""
        return self.predict_ms(self.full_counts())

    def predict_ms(self, counts: Mapping[str, int]) -> float:
        """Lookup-table latency of the network whose groups keep ``counts`` channels."""
        total = [self.outside_ms(counts)]
        for s in self.slots:
            total.append(self.slot_ms(s, {g: counts[g] for g in (*self.slot_streams(s), *self.inner(s))}))
        return math.fsum(total)

    # -- the integer program ------------------------------------------------------------------
    def problem(
        self,
        importance: Mapping[str, torch.Tensor],
        budget_ms: float,
        limits: Mapping[str, int] | None = None,
    ) -> tuple[Problem, list[Link]]:
        """The linked knapsack: minimise removed importance under ``budget_ms``; ``limits`` caps each
        group's count (already pruned channels stay pruned)."""
        limits = limits or {}
        slots: list[SlotChoices] = []
        links: list[Link] = []
        for slot in self.slots:
            cands, tags = [], {s: [] for s in self.slot_streams(slot)}
            for counts in self.slot_candidates(slot, limits):
                score = sum(removed_importance(importance[g], counts[g]) for g in self.inner(slot))
                key = ",".join(f"{g}={counts[g]}" for g in counts)
                cands.append(CandidateCost(key, self.slot_ms(slot, counts), score))
                for s in tags:
                    tags[s].append(str(counts[s]))
            slots.append(SlotChoices(slot.name, tuple(cands)))
            links += [Link(slot.name, STREAM_PREFIX + s, tuple(t)) for s, t in tags.items()]
        cands, tags = [], {s: [] for s in self.outside_streams()}
        for counts in self.outside_candidates(limits):
            key = ",".join(f"{g}={counts[g]}" for g in counts) or "teacher"
            cands.append(CandidateCost(key, self.outside_ms(counts), 0.0))
            for s in tags:
                tags[s].append(str(counts[s]))
        slots.append(SlotChoices(OUTSIDE_SLOT, tuple(cands)))
        links += [Link(OUTSIDE_SLOT, STREAM_PREFIX + s, tuple(t)) for s, t in tags.items()]
        for g in self.streams():
            opts = self.options(g, limits.get(g))
            cands = [CandidateCost(str(self.count(g, j)), 0.0, removed_importance(importance[g], self.count(g, j))) for j in opts]
            slots.append(SlotChoices(STREAM_PREFIX + g, tuple(cands)))
        return linked_problem(Problem(tuple(slots), budget_ms, 0.0), links), links

    def min_counts(self, limits: Mapping[str, int] | None = None) -> dict[str, int]:
        """The narrowest network ``limits`` allow: every stream and every slot's inner width at its last option."""
        limits = limits or {}
        counts = {s: self.count(s, self.options(s, limits.get(s))[-1]) for s in self.streams()}
        for slot in self.slots:
            last = self.slot_candidates(slot, limits)[-1]
            counts.update({g: last[g] for g in self.inner(slot)})
        return counts

    def widths(self, importance: Mapping[str, torch.Tensor], budget_ms: float,
               limits: Mapping[str, int] | None = None) -> dict[str, int]:
        """Group → kept channels: the linked knapsack's answer at ``budget_ms``. Raises
        :class:`InfeasibleBudgetError` (with the narrowest network's latency) below the narrowest
        network; a budget at or barely above it that the program cannot meet (latencies measured not
        quite monotone in width) gives the narrowest network."""
        floor = self.min_counts(limits)
        floor_ms = self.predict_ms(floor)
        if budget_ms < floor_ms:
            raise InfeasibleBudgetError(budget_ms, floor_ms)
        try:
            return self.decode(solve(self.problem(importance, budget_ms, limits)[0]).choices)
        except SearchError:
            return floor

    def decode(self, choices: Mapping[str, str]) -> dict[str, int]:
        """Group → kept channels from a selection of :meth:`problem`."""
        counts: dict[str, int] = {}
        for slot in self.slots:
            for part in choices[slot.name].split(","):
                g, _, n = part.rpartition("=")
                counts[g] = int(n)
        for g in self.streams():
            counts[g] = int(choices[STREAM_PREFIX + g])
        return counts

