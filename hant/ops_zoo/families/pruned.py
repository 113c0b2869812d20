"""The teacher's block channel-pruned: its inner groups cut to a fraction of their width."""

from __future__ import annotations

from torch import nn

from ...pruning.block import block_groups, block_keep_counts, prune_block, taylor_reselect
from ...slots import Slot
from ..registry import CandidateFamily, register_family
from ..selected import TaylorSelected
from ..spec import CandidateSpec
from ._common import importance_list

DEFAULT_WIDTHS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)


def _attention(block: nn.Module) -> bool:
    return any(hasattr(m, "num_heads") for m in block.modules())


@register_family("pruned")
class PrunedBlock(CandidateFamily):
    """The teacher's block with its inner channels cut to a fraction of their width (the teacher
    itself is the 100 % point), initialised from the teacher's most important channels:
    ``l1``, ``l2`` or ``lamp`` from weights, ``taylor`` from the first batch of slot data. The inner
    groups come from Torch-Pruning's dependency graph of the block (``hant.pruning.block``); blocks
    with attention are left to the transformer families."""

    teacher_derived = True

    def candidates(
        self,
        slot: Slot,
        teacher_block: nn.Module | None = None,
        widths: tuple[float, ...] = DEFAULT_WIDTHS,
        importance: str | tuple[str, ...] = "l1",
        divisor: int = 8,
    ) -> list[dict]:
        """One candidate per width (and importance) that gives distinct channel counts below the teacher's."""
        names = importance_list(importance)
        groups = block_groups(teacher_block, slot.in_shape)
        seen = {tuple(g.width for g in groups.values())}
        out = []
        for w in widths:
            if not 0.0 < float(w) < 1.0:
                continue
            kept = tuple(block_keep_counts(groups, float(w), int(divisor)).values())
            if kept not in seen:
                seen.add(kept)
                out.extend({"width": float(w), "importance": name, "divisor": int(divisor)} for name in names)
        return out

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return not _attention(teacher_block) and any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in teacher_block.modules())

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        p, shape = spec.params, spec.signature.in_shape
        pruned = prune_block(teacher_block, shape, p["width"], p["importance"], p["divisor"])
        if p["importance"] == "taylor":
            return TaylorSelected(pruned, taylor_reselect(teacher_block, shape, p["width"], p["divisor"]))
        return pruned
