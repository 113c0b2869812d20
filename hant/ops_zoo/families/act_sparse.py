"""The teacher's block with semi-structured activation sparsity: whole output pixels of each
convolution skipped by a fixed mask at ratio s (Grimaldi et al., 2023), run by the compiled kernel."""

from __future__ import annotations

import logging

from torch import nn

from ...slots import Slot
from ...sparsity import check_ratio, sparsify_block
from ...sparsity.masked import dense_layers
from ..registry import CandidateFamily, register_family
from ..spec import CandidateSpec

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.1, 0.2, 0.3)


@register_family("act_sparse")
class ActSparse(CandidateFamily):
    """One candidate per ratio s: every groups=1 convolution of the teacher's block masked at s
    (grouped and depthwise convolutions stay dense), initialised with the teacher's weights and
    sparse-trained in phase 1 (masks growing to s, then frozen)."""

    teacher_derived = True
    by_default = False  # runs only where the compiled kernel does (torch on the CPU): a recipe names it

    def candidates(
        self, slot: Slot, teacher_block: nn.Module | None = None, ratios: tuple[float, ...] = DEFAULT_RATIOS
    ) -> list[dict]:
        """One candidate per ratio in (0, 1); a ratio outside [0, 1) is an error."""
        values = [check_ratio(r, f"zoo.families.act_sparse.ratios entry {r!r}") for r in ratios]
        for path, reason in dense_layers(teacher_block):
            log.warning("act_sparse: %s.%s stays dense: %s", slot.name, path, reason)
        return [{"ratio": r} for r in sorted(set(values)) if r > 0.0]

    def applies_to(self, teacher_block: nn.Module) -> bool:
        return any(isinstance(m, nn.Conv2d) and m.groups == 1 for m in teacher_block.modules())

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        return sparsify_block(teacher_block, tuple(spec.signature.in_shape), spec.params["ratio"])
