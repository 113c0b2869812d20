"""The teacher's block with its convolutions and linear layers factorised by truncated SVD.

Every eligible layer is factorised: non-grouped convolutions and linear layers outside
squeeze-excite gates (those run on pooled 1×1 maps and cost nothing), whose factorised form at
the candidate's rank has fewer weights than the layer. A layer of rank ``R`` (``min(out, in·k²)``)
is factorised at ``rank`` × R, rounded to a multiple of 8; other layers stay as in the teacher.
"""

from __future__ import annotations

import copy

from torch import nn

from ...slots import Slot, set_submodule
from ..pruning import pruned_width
from ..registry import CandidateFamily, register_family
from ..spec import CandidateSpec
from ..svd import factorizable, factorize, full_rank, saves

RANK_DIVISOR = 8
_GATE_NAMES = ("SqueezeExcite", "SEModule", "EffectiveSEModule")


def _in_gate(block: nn.Module, path: str) -> bool:
    parts = path.split(".")
    for i in range(1, len(parts)):
        if type(block.get_submodule(".".join(parts[:i]))).__name__ in _GATE_NAMES:
            return True
    return False


def eligible_layers(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, layer) of the layers of ``block`` that low-rank factorisation may replace."""
    return [
        (path, m)
        for path, m in block.named_modules()
        if path and factorizable(m) and full_rank(m) > RANK_DIVISOR and not _in_gate(block, path)
    ]


def layer_ranks(block: nn.Module, fraction: float) -> dict[str, int]:
    """Path → rank of every layer factorised at ``fraction`` of its full rank."""
    ranks = {}
    for path, layer in eligible_layers(block):
        rank = pruned_width(full_rank(layer), fraction, RANK_DIVISOR)
        if saves(layer, rank):
            ranks[path] = rank
    return ranks


@register_family("lowrank")
class LowRank(CandidateFamily):
    """The teacher's block with each eligible layer replaced by a rank-r pair (k×k to r, 1×1 to
    out), initialised from the truncated SVD of the teacher's weight."""

    teacher_derived = True

    def candidates(
        self, slot: Slot, teacher_block: nn.Module | None = None, ranks: tuple[float, ...] = (0.125, 0.25, 0.5, 0.75)
    ) -> list[dict]:
        """One candidate per rank fraction that factorises a distinct set of layers at distinct ranks."""
        seen: set = set()
        out = []
        for fraction in ranks:
            if not 0.0 < float(fraction) < 1.0:
                continue
            plan = tuple(sorted(layer_ranks(teacher_block, float(fraction)).items()))
            if plan and plan not in seen:
                seen.add(plan)
                out.append({"rank": float(fraction)})
        return out

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return bool(eligible_layers(teacher_block))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        ranks = layer_ranks(teacher_block, spec.params["rank"])
        # copy the block without the weights that factorisation replaces
        skipped = {id(p): None for path in ranks for p in teacher_block.get_submodule(path).parameters(recurse=False)}
        block = copy.deepcopy(teacher_block, skipped)
        for path, rank in ranks.items():
            set_submodule(block, path, factorize(teacher_block.get_submodule(path), rank))
        return block
