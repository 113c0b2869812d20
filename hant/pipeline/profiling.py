"""From a teacher, its slots and its zoo to the latency package's terms (SlotOptions), and back."""
from __future__ import annotations

from typing import Mapping, Sequence

from torch import nn

from ..latency import SlotOptions
from ..ops_zoo import CandidateSpec, build_candidate
from ..ops_zoo.families.stream_cut import STREAM_FAMILY
from ..slots import Slot, get_submodule


def slot_options(teacher: nn.Module, slots: Sequence[Slot], zoo: Mapping[str, Sequence[CandidateSpec]]) -> list[SlotOptions]:
    """Each slot with its candidates as (uid, factory) pairs, ``keep`` first as the zoo lists it; the
    ``stream_cut`` candidates, which run on cut streams, are timed apart (``hant.pipeline.streams``)."""
    out = []
    for slot in slots:
        block = get_submodule(teacher, slot.path)
        options = tuple((spec.uid, lambda spec=spec, block=block: build_candidate(spec, block)) for spec in zoo[slot.name]
                        if spec.family != STREAM_FAMILY)
        out.append(SlotOptions(slot.path, tuple(slot.in_shape), tuple(slot.out_shape), options))
    return out
