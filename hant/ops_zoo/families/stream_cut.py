"""The teacher's block on narrower residual streams: its input and output channels cut to the first
``inp`` and ``out`` of the streams it reads and writes, its inner channels to a fraction.

The streams are the channels a whole stage shares (a ResNet stage's residual width), so one slot
cannot narrow them alone: the integer program links every slot on a stream, and the part of the
network outside the slots, to one width (``hant.pipeline.streams``). "First channels" are the most
important ones because a run that offers this family reorders its teacher's streams by importance
first (``hant.pruning.reorder``). For distillation and swap-in scoring a candidate stands in the
full-width teacher as :class:`StreamCut`: it reads the kept input channels and writes zeros into the
dropped output channels, so its loss counts the dropped channels as error. The student holds only
:attr:`StreamCut.inner`, on a network cut to the chosen widths.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ...pruning.apply import pruned_copy
from ...pruning.block import block_keep_counts
from ...pruning.groups import GroupGraph, trace_groups
from ...pruning.importance import weight_importance
from ...pruning.state import top_keeps
from ...slots import Slot, structure_hash
from ..pruning import pruned_width
from ..registry import CandidateFamily, register_family
from ..spec import CandidateSpec
from ._common import fits_spatial

STREAM_FAMILY = "stream_cut"
DEFAULT_FRACTIONS = (0.75, 0.5, 0.25)
DEFAULT_WIDTHS = (1.0, 0.75, 0.5, 0.25)

__all__ = ["STREAM_FAMILY", "StreamCut", "cut_in_shape"]


class StreamCut(nn.Module):
    """``inner`` (a block cut to ``inp`` input and ``out`` output channels) in a full-width network:
    it reads the first ``inp`` channels and pads its output with zeros to ``out_width`` channels."""

    def __init__(self, inner: nn.Module, inp: int, out: int, out_width: int) -> None:
        super().__init__()
        self.inner, self.inp, self.out, self.out_width = inner, inp, out, out_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x[:, : self.inp])
        return F.pad(y, (0, 0, 0, 0, 0, self.out_width - y.shape[1]))


class _Probe(nn.Module):
    """A block between two 1x1 convolutions, so that Torch-Pruning roots groups at its input and output."""

    def __init__(self, block: nn.Module, c_in: int, c_out: int) -> None:
        super().__init__()
        self.enter, self.block, self.leave = nn.Conv2d(c_in, c_in, 1), block, nn.Conv2d(c_out, c_out, 1)
        self.train(block.training)  # tracing restores the probe's mode, which must not flip the teacher's block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.leave(self.block(self.enter(x)))


_GRAPHS: dict[tuple[str, tuple[int, ...]], GroupGraph] = {}


def _probe_graph(block: nn.Module, in_shape: tuple[int, ...], out_channels: int) -> GroupGraph:
    key = (structure_hash(block), tuple(in_shape))
    if key not in _GRAPHS:
        probe = _Probe(block, in_shape[0], out_channels)
        example = torch.randn(2, *in_shape, generator=torch.Generator().manual_seed(0))
        _GRAPHS[key] = trace_groups(probe, example, ["block"], check=False)
    return _GRAPHS[key]


def _sides(graph: GroupGraph) -> tuple[str | None, str | None]:
    """The probe's groups at the block's input and output (None where that side cannot be cut)."""
    def one(names: list[str]) -> str | None:
        ok = [n for n in names if not graph.groups[n].fixed]
        return ok[0] if len(names) == 1 and ok else None
    return one(graph.slot_inputs.get("block", [])), one(graph.slot_outputs.get("block", []))


def _inner(graph: GroupGraph) -> dict:
    """The probe's groups inside the block that can be cut (its inner widths)."""
    return {n: g for n, g in graph.groups.items() if g.slot == "block" and not g.fixed}


def cut_in_shape(spec: CandidateSpec) -> tuple[int, ...]:
    """Per-sample input shape of the cut block a ``stream_cut`` spec deploys."""
    return (int(spec.params["inp"]), *spec.signature.in_shape[1:])


@register_family(STREAM_FAMILY)
class StreamCutBlock(CandidateFamily):
    """The teacher's block with its input and output streams cut to ``fractions`` of their width (at
    least one of them cut) and its inner channels to ``widths``, initialised from the teacher's
    weights (streams: their first channels; inner channels: the largest filters by L1). Offered only
    where a recipe names it: a run with it reorders the teacher's streams and links the widths."""

    teacher_derived = True
    by_default = False

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
        widths: tuple[float, ...] = DEFAULT_WIDTHS,
        divisor: int = 8,
    ) -> list[dict]:
        """Every (input, output, inner) width combination with a stream narrower than the teacher's."""
        if teacher_block is None or not fits_spatial(slot):
            return []
        graph = _probe_graph(teacher_block, tuple(slot.in_shape), slot.out_shape[0])
        g_in, g_out = _sides(graph)
        c_in, c_out = slot.in_shape[0], slot.out_shape[0]

        def options(group: str | None, full: int) -> list[int]:
            cut = [pruned_width(full, float(f), int(divisor)) for f in fractions if 0.0 < float(f) < 1.0] if group else []
            return list(dict.fromkeys([full, *cut]))

        inner = _inner(graph)
        inner_opts = [w for w in dict.fromkeys(float(w) for w in widths) if 0.0 < w <= 1.0] if inner else [1.0]
        out, seen = [], set()
        coupled = g_in is not None and g_in == g_out
        pairs = [(n, n) for n in options(g_in, c_in)] if coupled else itertools.product(options(g_in, c_in), options(g_out, c_out))
        for (n_in, n_out), w in itertools.product(pairs, inner_opts):
            if n_in == c_in and n_out == c_out:
                continue  # the teacher's streams: the ``pruned`` family's candidates
            kept = (n_in, n_out, tuple(block_keep_counts(inner, w, int(divisor)).values()))
            if kept not in seen:
                seen.add(kept)
                out.append({"inp": n_in, "out": n_out, "width": w, "divisor": int(divisor)})
        return out

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return any(isinstance(m, nn.Conv2d) for m in teacher_block.modules())

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        p, shape = spec.params, tuple(spec.signature.in_shape)
        out_width = spec.signature.out_shape[0]
        graph = _probe_graph(teacher_block, shape, out_width)
        g_in, g_out = _sides(graph)
        keeps: dict[str, torch.Tensor] = {}
        if g_in is not None:
            keeps[g_in] = torch.arange(int(p["inp"]))
        if g_out is not None and g_out != g_in:
            keeps[g_out] = torch.arange(int(p["out"]))
        inner = _inner(graph)
        probe = _Probe(teacher_block, shape[0], out_width)
        if inner and p["width"] < 1.0:
            scores = weight_importance(probe, inner.values(), "l1")
            counts = block_keep_counts(inner, float(p["width"]), int(p["divisor"]))
            keeps.update(top_keeps(scores, counts, {n: g.unit for n, g in inner.items()}))
        cut = pruned_copy(probe, graph.groups, keeps).block
        return StreamCut(cut, int(p["inp"]), int(p["out"]), out_width)
