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
Reselect = Callable[[torch.Tensor, torch.Tensor], nn.Module]
"""Builds the candidate again from the teacher's block, keeping the channels best on a batch ``(x, target)``."""


class TaylorSelected(nn.Module):
    """Holds ``initial`` (channels ranked by L1); ``init_from_batch`` reloads it with the weights of
    ``reselect(x, target)``, the same structure with the channels best by Taylor importance.

    ``reselect`` refers to the teacher's block (it is neither trained nor saved) until
    ``init_from_batch`` has used it.
    """

    def __init__(self, initial: nn.Module, reselect: Reselect):
        super().__init__()
        self.block = initial
        self._source: tuple[Reselect, ...] = (reselect,)

    @classmethod
    def from_plans(cls, teacher: nn.Module, plans: Sequence[PrunePlan], counts: Sequence[int], derive: Derive) -> "TaylorSelected":
        """``derive(teacher, plans, keeps)`` with each plan's ``counts`` channels (a transformer block's heads or units)."""
        plans, counts = list(plans), list(counts)

        def reselect(x: torch.Tensor, target: torch.Tensor) -> nn.Module:
            scores = taylor_importance(teacher, plans, x, target)
            return derive(teacher, plans, [select_keep(s, n, plan.unit) for s, n, plan in zip(scores, counts, plans)])

        return cls(derive(teacher, plans, weight_keeps(teacher, plans, counts, "l1")), reselect)

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor, target: torch.Tensor) -> None:
        """Rank the channels by first-order Taylor importance on ``(x, target)`` and reload the
        teacher's weights of the best ones (same structure, parameters updated in place)."""
        if not self._source:
            return
        (reselect,) = self._source
        self.block.load_state_dict(reselect(x, target).state_dict())
        self._source = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
