"""Capture every slot's input and output from one teacher forward pass."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..slots import Slot


class SlotCapture:
    """Forward hooks that record each slot's (input, output) during a teacher forward pass.

    Use as a context manager; ``run(x)`` returns ``{slot name: (input, output)}``. The tensors
    are cloned, so in-place operations later in the network cannot alter them.
    """

    def __init__(self, teacher: nn.Module, slots: Sequence[Slot]):
        self.teacher = teacher
        self.slots = list(slots)
        self._io: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles: list = []

    def __enter__(self) -> "SlotCapture":
        for slot in self.slots:
            module = self.teacher.get_submodule(slot.path)
            self._handles.append(module.register_forward_hook(self._hook(slot.name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self._io[name] = (args[0].detach().clone(), output.detach().clone())

        return hook

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self._io = {}
        self.teacher.eval()
        self.teacher(x)
        return self._io
