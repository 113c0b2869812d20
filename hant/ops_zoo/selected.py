"""Teacher-derived modules whose kept channels are chosen by first-order Taylor importance on data.

The structure (how many channels each group keeps) comes from the spec alone, so ``load_student``
rebuilds it without data; which channels are kept, and so the initial weights, is decided on the
first batch of real slot data (the distiller's ``init_from_batch`` hook). Until then the module
holds the weights of the channels ranked best by L1.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .importance import taylor_importance
from .pruning import PrunePlan, select_keep, weight_keeps

Derive = Callable[[nn.Module, Sequence[PrunePlan], Sequence[torch.Tensor]], nn.Module]
"""Builds the candidate from the teacher's block, its plans and each plan's kept channels."""


class TaylorSelected(nn.Module):
    """Wraps ``derive(teacher, plans, keeps)``; re-selects ``keeps`` by Taylor importance on data.

    Holds a reference to the teacher's block (not a submodule: it is neither trained nor saved)
    until ``init_from_batch`` has used it.
    """

    def __init__(self, teacher: nn.Module, plans: Sequence[PrunePlan], counts: Sequence[int], derive: Derive):
        super().__init__()
        self.block = derive(teacher, plans, weight_keeps(teacher, plans, counts, "l1"))
        self._source = (teacher, list(plans), list(counts), derive)

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor, target: torch.Tensor) -> None:
        """Rank each group's channels by first-order Taylor importance on ``(x, target)`` and
        reload the teacher's weights of the best ones (same structure, parameters updated in place)."""
        if not self._source:
            return
        teacher, plans, counts, derive = self._source
        scores = taylor_importance(teacher, plans, x, target)
        keeps = [select_keep(s, n, plan.unit) for s, n, plan in zip(scores, counts, plans)]
        self.block.load_state_dict(derive(teacher, plans, keeps).state_dict())
        self._source = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
