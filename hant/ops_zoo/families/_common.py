"""Helpers shared by the built-in families: slot fit, residual frame, cost estimates, options."""

from __future__ import annotations

import math
from itertools import product
from typing import Callable, Iterable

from ...slots import Slot
from ..importance import IMPORTANCES
from ..spec import SlotSignature

DEFAULT_MAX_COST = 8.0
"""Generated candidates estimated above this multiple of a slot's reference MACs are not offered."""


def fits_spatial(slot: Slot) -> bool:
    """A conv family fits a non-transformer slot mapping (C, H, W) to (C', H/s, W/s), integer s."""
    if slot.kind == "transformer_block" or len(slot.in_shape) != 3 or len(slot.out_shape) != 3:
        return False
    _, h, w = slot.in_shape
    _, ho, wo = slot.out_shape
    s = slot.stride
    return ho == -(-h // s) and wo == -(-w // s)


def frame(sig: SlotSignature) -> tuple[int, int, int, bool, str | None]:
    """(in channels, out channels, stride, residual, post activation) of a generated candidate."""
    cin, cout, stride = sig.in_shape[0], sig.out_shape[0], sig.stride
    residual = tuple(sig.in_shape) == tuple(sig.out_shape)
    post = "relu" if sig.out_nonnegative else None
    return cin, cout, stride, residual, post


def pixels(shape: tuple[int, ...]) -> int:
    """Spatial positions of a (C, H, W) shape (the product of the dimensions after the first)."""
    return math.prod(shape[1:])


def reference_macs(slot: Slot) -> int:
    """What a generated candidate's cost is compared with: the teacher block's MACs, or those of a
    plain 3×3 convolution between the slot's shapes where that is more (so that a very cheap
    teacher block still gets the standard alternatives)."""
    dense = slot.in_shape[0] * slot.out_shape[0] * 9 * pixels(slot.out_shape)
    return max(slot.macs or 0, dense)


def within_cost(slot: Slot, macs: int, max_cost: float | None) -> bool:
    """Whether a candidate's estimated MACs stay within ``max_cost`` × the slot's reference MACs
    (always true when ``max_cost`` is None or the slot's MACs are unknown)."""
    if max_cost is None or not slot.macs:
        return True
    return macs <= float(max_cost) * reference_macs(slot)


def importance_list(importance: str | Iterable[str]) -> list[str]:
    """One or several importance criteria, validated."""
    names = [importance] if isinstance(importance, str) else list(importance)
    for name in names:
        if name not in IMPORTANCES:
            raise ValueError(f"unknown importance {name!r}; choose from {list(IMPORTANCES)}")
    return names


def costed_grid(
    slot: Slot, max_cost: float | None, macs: Callable[[dict], int | None], **axes: Iterable
) -> list[dict]:
    """Every combination of ``axes`` (name → values, first axis varying slowest) whose estimated
    ``macs(params)`` stays within ``max_cost`` (``within_cost``); ``macs`` returns None for a
    combination that cannot be built. Empty when the slot is not a (C, H, W) map (``fits_spatial``)."""
    if not fits_spatial(slot):
        return []
    out = []
    for values in product(*axes.values()):
        params = dict(zip(axes, values))
        cost = macs(params)
        if cost is not None and within_cost(slot, cost, max_cost):
            out.append(params)
    return out


def ints(values: Iterable) -> list[int]:
    return [int(v) for v in values]


def bools(values: Iterable) -> list[bool]:
    return [bool(v) for v in values]
