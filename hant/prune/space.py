"""The pruning search space as hant's integer program: per slot, its teacher block with the inner
width and the widths of the streams at its input and output; per stream, a group slot; links.

Every width is a fraction of the teacher's channels from one grid (``fractions``, rounded to
``divisor`` channels: the neuron-group size). A slot's candidate fixes its inner fraction and the
fraction of each stream it touches; the stream's group slot holds the stream's layers outside any
slot (stem, head) and its importance, and links force all slots on a stream to agree with it.
Latencies come from a lookup table measured on the target (blocks and unslotted stream layers at
every width they can take); scores are the importance each choice removes.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..latency import LatencyCache, LatencyTarget, profile
from ..ops_zoo.pruning import pruned_width
from ..search import CandidateCost, Problem, SlotChoices
from ..search.linking import Link, linked_problem
from ..slots import Slot, structure_hash
from .apply import first_channels, pruned_copy
from .groups import GroupGraph

__all__ = ["PruneSpace", "STREAM_PREFIX", "removed_importance"]

STREAM_PREFIX = "stream:"


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
        return pruned_width(self.graph.groups[group].width, self.fractions[j], self.divisor)

    def streams(self) -> list[str]:
        return [g.name for g in self.graph.streams()]

    def slot_streams(self, slot: Slot) -> list[str]:
        """The streams at a slot's input and output (one when they are the same)."""
        names = [self.graph.slot_in.get(slot.path), self.graph.slot_out.get(slot.path)]
        return [n for n in dict.fromkeys(names) if n is not None and self.graph.groups[n].is_stream]

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

    # -- latency lookup table -----------------------------------------------------------------
    def slot_uid(self, slot: Slot, block_hash: str, counts: Mapping[str, int]) -> str:
        widths = ",".join(f"{counts[g]}" for g in sorted(counts))
        return f"prune-block:{block_hash}:{slot.path}:{widths}"

    def _slot_entry(self, teacher: nn.Module, slot: Slot, counts: Mapping[str, int]) -> tuple:
        block = teacher.get_submodule(slot.path)
        in_group = self.graph.slot_in.get(slot.path)
        channels = counts.get(in_group, slot.in_shape[0]) if in_group else slot.in_shape[0]
        shape = (channels, *slot.in_shape[1:])
        factory = lambda: pruned_copy(block, self.graph.groups, first_channels(counts), prefix=slot.path)  # noqa: E731
        return self.slot_uid(slot, structure_hash(block), counts), factory, shape

    def _stream_layers(self, stream: str) -> list[str]:
        g = self.graph.groups[stream]
        return [p for p in g.members if not any(p == s.path or p.startswith(s.path + ".") for s in self.slots)]

    def _stream_entries(self, teacher: nn.Module, stream: str, j: int) -> list[tuple]:
        entries = []
        n = self.count(stream, j)
        g = self.graph.groups[stream]
        for path in self._stream_layers(stream):
            layer = teacher.get_submodule(path)
            shape = list(self.graph.layer_in_shape[path])
            if path not in g.producers:
                shape[0] = n
            uid = f"prune-layer:{structure_hash(layer)}:{path}:{stream}={n}"
            factory = lambda layer=layer, path=path: pruned_copy(layer, {stream: g}, {stream: torch.arange(n)}, prefix=path)  # noqa: E731
            entries.append((uid, factory, tuple(shape)))
        return entries

    def entries(self, teacher: nn.Module, input_shape: tuple[int, ...]) -> list[tuple]:
        """Lookup-table entries ``(uid, module factory, per-sample input shape)``, the teacher first:
        every slot candidate and every stream's unslotted layers at each width."""
        entries = [(f"prune-teacher:{structure_hash(teacher)}", teacher, tuple(input_shape))]
        for slot in self.slots:
            for counts in self.slot_candidates(slot):
                entries.append(self._slot_entry(teacher, slot, counts))
        for stream in self.streams():
            for j in self.options(stream):
                entries += self._stream_entries(teacher, stream, j)
        return entries

    def set_latencies(self, teacher: nn.Module, latency_ms: Mapping[str, float], teacher_ms: float) -> None:
        """Fill the lookup table from entry uid → ms (from :meth:`measure`, or a model of latency)."""
        self.latency.update(latency_ms)
        self.teacher_ms = teacher_ms
        self._teacher = teacher

    def measure(self, teacher: nn.Module, input_shape: tuple[int, ...], target: LatencyTarget, **kwargs) -> None:
        """Measure every entry on ``target`` (the shared latency cache first) into the lookup table."""
        entries = self.entries(teacher, input_shape)
        stats, _ = profile(entries, target, LatencyCache(), **kwargs)
        self.set_latencies(teacher, {uid: s.median_ms for uid, s in stats.items()}, stats[entries[0][0]].median_ms)

    def slot_ms(self, slot: Slot, counts: Mapping[str, int]) -> float:
        uid = self.slot_uid(slot, structure_hash(self._teacher.get_submodule(slot.path)), counts)
        return self.latency[uid]

    def stream_ms(self, stream: str, j: int) -> float:
        return sum(self.latency[uid] for uid, _, _ in self._stream_entries(self._teacher, stream, j))

    def full_counts(self) -> dict[str, int]:
        names = set(self.streams()) | {g for s in self.slots for g in self.inner(s)}
        return {g: self.graph.groups[g].width for g in names}

    def fixed_ms(self) -> float:
        """The teacher's latency outside slots and stream layers (stem glue, pooling, head)."""
        full = self.full_counts()
        slots = sum(self.slot_ms(s, {g: full[g] for g in (*self.slot_streams(s), *self.inner(s))}) for s in self.slots)
        streams = sum(self.stream_ms(g, 0) for g in self.streams())
        return max(0.0, self.teacher_ms - slots - streams)

    @property
    def predicted_teacher_ms(self) -> float:
        """The lookup table's latency of the unpruned teacher: what budget fractions are fractions of.

        It equals :attr:`teacher_ms` unless the slots and streams timed alone add up to more than the
        whole teacher (the clamp in :meth:`fixed_ms`); a budget taken from the measured teacher would
        then prune even at fraction 1.0.
        """
        return self.predict_ms(self.full_counts())

    def predict_ms(self, counts: Mapping[str, int]) -> float:
        """Lookup-table latency of the network whose groups keep ``counts`` channels."""
        total = [self.fixed_ms()]
        for s in self.slots:
            total.append(self.slot_ms(s, {g: counts[g] for g in (*self.slot_streams(s), *self.inner(s))}))
        for g in self.streams():
            j = next(j for j in self.options(g) if self.count(g, j) == counts[g])
            total.append(self.stream_ms(g, j))
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
        for g in self.streams():
            opts = self.options(g, limits.get(g))
            cands = [
                CandidateCost(str(self.count(g, j)), self.stream_ms(g, j), removed_importance(importance[g], self.count(g, j)))
                for j in opts
            ]
            slots.append(SlotChoices(STREAM_PREFIX + g, tuple(cands)))
        return linked_problem(Problem(tuple(slots), budget_ms, self.fixed_ms()), links), links

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

