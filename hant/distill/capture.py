"""Capture every slot's input and output (and chosen module outputs) from one teacher forward pass."""
from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any, ContextManager, Iterable, Sequence

import torch
from torch import nn

from ..slots import Slot

log = logging.getLogger(__name__)

Point = tuple[str, int]
"""A module call: (module path, index of the call within one forward pass)."""


def _version(obj: Any) -> int | None:
    return obj._version if isinstance(obj, torch.Tensor) else None


def _keep(obj: Any, clone: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach()
        return obj.clone() if clone else obj
    return obj


class SlotCapture:
    """Hooks that record each slot's (input, output) during a no-grad teacher forward pass.

    Use as a context manager; ``run(x)`` returns ``{slot name: (input, output)}`` and leaves the
    teacher's logits in ``logits`` and the outputs of the ``extra`` module calls in ``extra``.
    Tensors are kept without copying; a tensor that the network later changes in place (its
    version counter moves) is cloned from then on, and that batch is run again. The hooks
    record only inside ``run``, so other forward passes may happen within the context.
    """

    def __init__(
        self,
        teacher: nn.Module,
        slots: Sequence[Slot],
        extra: Iterable[Point] = (),
        autocast: ContextManager | None = None,
    ):
        self.teacher = teacher
        self.slots = list(slots)
        self.extra_points = sorted(set(extra))
        self.autocast = autocast
        self.logits: torch.Tensor | None = None
        self.extra: dict[Point, Any] = {}
        self._io: dict[str, list] = {}
        self._versions: dict[tuple, int | None] = {}
        self._clone: set[tuple] = set()
        self._calls: dict[str, int] = {}
        self._active = False
        self._handles: list = []

    def __enter__(self) -> "SlotCapture":
        for slot in self.slots:
            module = self.teacher.get_submodule(slot.path)
            self._handles.append(module.register_forward_pre_hook(self._slot_input(slot.name)))
            self._handles.append(module.register_forward_hook(self._slot_output(slot.name)))
        for path in sorted({p for p, _ in self.extra_points}):
            wanted = {k for p, k in self.extra_points if p == path}
            module = self.teacher.get_submodule(path)
            self._handles.append(module.register_forward_hook(self._extra_output(path, wanted)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _store(self, key: tuple, obj: Any) -> Any:
        kept = _keep(obj, key in self._clone)
        self._versions[key] = _version(kept)
        return kept

    def _slot_input(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if self._active:
                self._io.setdefault(name, [None, None])[0] = self._store(("in", name), args[0])

        return hook

    def _slot_output(self, name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if self._active:
                self._io.setdefault(name, [None, None])[1] = self._store(("out", name), output)

        return hook

    def _extra_output(self, path: str, wanted: set[int]):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self._active:
                return
            k = self._calls.get(path, 0)
            self._calls[path] = k + 1
            if k in wanted:
                self.extra[(path, k)] = self._store(("extra", path, k), output)

        return hook

    def _changed(self) -> list[tuple]:
        """Keys whose tensors were changed in place after they were recorded."""
        current: dict[tuple, Any] = {}
        for name, (x_in, out) in self._io.items():
            current[("in", name)], current[("out", name)] = x_in, out
        for (path, k), obj in self.extra.items():
            current[("extra", path, k)] = obj
        return [key for key, obj in current.items() if _version(obj) != self._versions.get(key)]

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self.teacher.eval()
        for _ in range(2):
            self._io, self.extra, self._calls, self._versions = {}, {}, {}, {}
            self._active = True
            try:
                with self.autocast or nullcontext():
                    self.logits = self.teacher(x)
            finally:
                self._active = False
            changed = self._changed()
            if not changed:
                break
            log.debug("teacher changes captured tensors %s in place; cloning them from now on", changed)
            self._clone.update(changed)
        return {name: (x_in, out) for name, (x_in, out) in self._io.items()}
