"""Memory estimates of candidates, and chunks of candidates that fit a budget.

A chunk holds every candidate's weights, gradients and Adam moments for the whole pass, but
only one candidate's autograd graph at a time (each steps before the next runs), plus the
captured slot inputs and outputs of the current batch.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
from torch import nn

log = logging.getLogger(__name__)
T = TypeVar("T")
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Footprint:
    """Bytes a candidate needs while it trains: kept for the whole chunk, and only while it steps."""

    state: int
    """Weights, buffers, gradients and the two Adam moments."""
    transient: int
    """Tensors autograd saves for the backward pass, plus the output, at the training batch size."""


def saved_activation_bytes(module: nn.Module, in_shape: Sequence[int], batch_size: int) -> int:
    """Bytes autograd saves in one training forward of ``module`` (measured on a copy at batch 2)."""
    probe = copy.deepcopy(module).cpu().train().requires_grad_(True)
    params = {p.untyped_storage().data_ptr() for p in probe.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    x = torch.ones(2, *in_shape)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = probe(x)
    per_sample = (sum(seen.values()) + out.numel() * out.element_size()) / 2
    return int(per_sample * batch_size)


def footprint(module: nn.Module, in_shape: Sequence[int], batch_size: int) -> Footprint:
    """The training footprint of one candidate at ``batch_size``."""
    weights = sum(p.numel() for p in module.parameters()) * FLOAT_BYTES
    buffers = sum(b.numel() * b.element_size() for b in module.buffers())
    return Footprint(4 * weights + buffers, saved_activation_bytes(module, in_shape, batch_size))


def captured_bytes(in_shape: Sequence[int], out_shape: Sequence[int], batch_size: int) -> int:
    """Bytes of one slot's captured input and output for a batch."""
    n = 1
    for d in in_shape:
        n *= d
    m = 1
    for d in out_shape:
        m *= d
    return (n + m) * batch_size * FLOAT_BYTES


def default_budget(device: torch.device) -> int | None:
    """70% of free GPU memory on CUDA, half the available RAM on CPU (None where unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.7 * free)
    try:
        return int(0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def pack_chunks(
    items: Sequence[T],
    footprints: Sequence[Footprint] | None,
    groups: Sequence[str],
    group_bytes: dict[str, int],
    max_count: int,
    budget: int | None,
) -> list[list[T]]:
    """Split ``items`` in order into chunks of at most ``max_count`` that fit ``budget`` bytes.

    A chunk costs its items' state, the largest transient of its items, and ``group_bytes`` of
    each distinct group (slot) it touches. An item that alone exceeds the budget gets its own
    chunk (with a warning). Without a budget, ``footprints`` may be None.
    """
    if budget is None or footprints is None:
        size = max(1, max_count)
        return [list(items[i : i + size]) for i in range(0, len(items), size)]
    chunks: list[list[T]] = []
    current: list[T] = []
    state = transient = 0
    touched: set[str] = set()
    for item, fp, group in zip(items, footprints, groups):
        new_touched = touched | {group}
        cost = state + fp.state + max(transient, fp.transient) + sum(group_bytes[g] for g in new_touched)
        if current and (len(current) >= max(1, max_count) or (budget is not None and cost > budget)):
            chunks.append(current)
            current, state, transient, new_touched = [], 0, 0, {group}
            cost = fp.state + fp.transient + group_bytes[group]
        if budget is not None and not current and cost > budget:
            log.warning("a candidate needs %.0f MB, more than the chunk budget of %.0f MB; training it alone",
                        cost / 2**20, budget / 2**20)
        current.append(item)
        state, transient, touched = state + fp.state, max(transient, fp.transient), new_touched
    if current:
        chunks.append(current)
    return chunks
