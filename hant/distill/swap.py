"""The swap-in score: the teacher with only one slot replaced, run from the slot onward.

timm models cannot be cut at a block in general, so the part before the slot is skipped by
replay instead: a trace of one forward pass finds the module calls that finish before the slot
starts and are not nested in another such call; their outputs are recorded during the capture
pass, and in the swapped pass each returns its recorded output instead of computing. The slot
returns the candidate's output. Only glue code between modules (cheap tensor ops) and the network
after the slot run. For each slot, a pass with the teacher's own slot output must reproduce the
teacher's logits; where it does not (a model whose forward depends on state the replay misses),
that slot falls back to recomputing the whole prefix, and if even that differs, it gets no
swap-in score. Recorded outputs that the network after the slot changes in place are cloned
before each replay.
"""
from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..slots import Slot
from .capture import Point, SlotCapture

log = logging.getLogger(__name__)

Event = tuple[str, str]
"""("pre" | "post", module path) in call order."""


@torch.no_grad()
def trace_calls(model: nn.Module, x: torch.Tensor) -> list[Event]:
    """The order in which ``model``'s submodules start and finish during ``model(x)``."""
    events: list[Event] = []
    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, p=path: events.append(("pre", p))))
        handles.append(module.register_forward_hook(lambda m, a, o, p=path: events.append(("post", p))))
    try:
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
    return events


def prefix_calls(events: Sequence[Event], slot_path: str) -> list[Point] | None:
    """The outermost module calls finished before ``slot_path`` starts (None if it is called twice or never)."""
    if sum(1 for kind, path in events if kind == "pre" and path == slot_path) != 1:
        return None
    stack: list[Point] = []
    parent: dict[Point, Point | None] = {}
    counts: dict[str, int] = {}
    finished: list[Point] = []
    for kind, path in events:
        if kind == "post":
            finished.append(stack.pop())
            continue
        if path == slot_path:
            open_calls = set(stack)
            return [c for c in finished if parent[c] is None or parent[c] in open_calls]
        call = (path, counts.get(path, 0))
        counts[path] = call[1] + 1
        parent[call] = stack[-1] if stack else None
        stack.append(call)
    return None


@contextmanager
def _forward_replaced(module: nn.Module, forward: Callable[..., Any]) -> Iterator[None]:
    had = "forward" in module.__dict__
    old = module.__dict__.get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if had:
            module.forward = old
        else:
            del module.forward


def _replaying(original: Callable[..., Any], outputs: dict[int, Any]) -> Callable[..., Any]:
    calls = [0]

    def forward(*args: Any, **kwargs: Any) -> Any:
        k = calls[0]
        calls[0] += 1
        return outputs[k] if k in outputs else original(*args, **kwargs)

    return forward


def _same_logits(got: torch.Tensor, ref: torch.Tensor) -> bool:
    return got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()) + 1e-12)


class SwapIn:
    """Logits of the teacher with one slot's output replaced, for slots of one teacher."""

    def __init__(self, teacher: nn.Module, slots: Sequence[Slot], example: torch.Tensor):
        self.teacher = teacher
        self.slots = {s.name: s for s in slots}
        events = trace_calls(teacher, example)
        self.plans: dict[str, list[Point]] = {s.name: prefix_calls(events, s.path) or [] for s in slots}
        self.clone: dict[str, set[Point]] = {s.name: set() for s in slots}
        self.available: dict[str, bool] = {s.name: True for s in slots}

    @property
    def points(self) -> list[Point]:
        """Every module call whose output the capture pass must record."""
        return sorted({p for plan in self.plans.values() for p in plan})

    @torch.no_grad()
    def logits(self, slot: str, x: torch.Tensor, recorded: dict[Point, Any], output: torch.Tensor) -> torch.Tensor:
        """Teacher logits for batch ``x`` with slot ``slot`` producing ``output``.

        ``recorded`` holds the outputs the capture pass recorded for this batch.
        """
        by_path: dict[str, dict[int, Any]] = {}
        for point in self.plans[slot]:
            value = recorded[point]
            by_path.setdefault(point[0], {})[point[1]] = value.clone() if point in self.clone[slot] else value
        with ExitStack() as stack:
            for path, outputs in by_path.items():
                module = self.teacher.get_submodule(path)
                stack.enter_context(_forward_replaced(module, _replaying(module.forward, outputs)))
            block = self.teacher.get_submodule(self.slots[slot].path)
            stack.enter_context(_forward_replaced(block, lambda *a, **k: output))
            return self.teacher(x)

    def calibrate(self, capture: SlotCapture, x: torch.Tensor) -> None:
        """Check every slot's replay on batch ``x`` against the teacher's own logits (see module doc)."""
        for name in self.slots:
            for _ in range(len(self.plans[name]) + 2):
                io = capture.run(x)
                recorded = capture.extra
                before = {p: recorded[p]._version for p in self.plans[name] if isinstance(recorded[p], torch.Tensor)}
                got = self.logits(name, x, recorded, io[name][1].clone())
                changed = {p for p, v in before.items() if recorded[p]._version != v}
                if not changed - self.clone[name]:
                    break
                self.clone[name] |= changed
            if _same_logits(got, capture.logits):
                continue
            if self.plans[name]:
                log.info("slot %s: replaying the layers before it changes the logits; recomputing them instead", name)
                self.plans[name], self.clone[name] = [], set()
                io = capture.run(x)
                got = self.logits(name, x, capture.extra, io[name][1].clone())
                if _same_logits(got, capture.logits):
                    continue
            log.warning("slot %s: the teacher with its own block output swapped in does not reproduce its "
                        "logits; it gets no swap-in score", name)
            self.available[name] = False
        capture.run(x)
