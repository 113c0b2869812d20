"""Validate a zoo: build every candidate, run it on its slot's input shape, round-trip its spec."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ..slots import Slot, get_submodule
from .registry import build_candidate
from .spec import CandidateSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckFailure:
    """One candidate that failed the check, and why."""

    slot: str
    key: str
    error: str


@dataclass
class CheckReport:
    """Outcome of ``check_zoo``."""

    candidates: int = 0
    seconds: float = 0.0
    failures: list[CheckFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def round_trip_error(spec: CandidateSpec) -> str | None:
    """Why ``spec`` does not survive a JSON round trip unchanged (key, uid, equality), or None."""
    try:
        back = CandidateSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    except Exception as e:  # a malformed spec is what this check exists to find
        return f"JSON round trip failed: {type(e).__name__}: {e}"
    if back != spec or back.key != spec.key or back.uid != spec.uid or back.params != spec.params:
        return f"JSON round trip changed the spec ({back.key!r})"
    return None


def check_candidate(spec: CandidateSpec, slot: Slot, teacher_block: nn.Module, x: torch.Tensor) -> str | None:
    """Build ``spec``, run it on ``x`` (batch 1 of the slot's input) and check the output; None if fine."""
    error = round_trip_error(spec)
    if error:
        return error
    try:
        with torch.no_grad():
            module = build_candidate(spec, teacher_block).eval()
        with torch.inference_mode():
            y = module(x)
    except Exception as e:  # report every failing candidate, never stop at the first
        return f"{type(e).__name__}: {e}".splitlines()[0]
    if not isinstance(y, torch.Tensor):
        return f"returned {type(y).__name__}, not a tensor"
    want = (x.shape[0], *slot.out_shape)
    if tuple(y.shape) != want:
        return f"output shape {tuple(y.shape[1:])}, expected {tuple(slot.out_shape)}"
    if not torch.isfinite(y).all():
        return "output has non-finite values"
    return None


def check_zoo(
    teacher: nn.Module,
    slots: Sequence[Slot],
    zoo: Mapping[str, list[CandidateSpec]],
    seed: int = 0,
    on_candidate: Callable[[Slot, CandidateSpec, str | None], None] | None = None,
    threads: int | None = 1,
) -> CheckReport:
    """Build every candidate of ``zoo``, run a batch-1 forward on its slot's input shape, and check
    the output shape (and finiteness) and the spec's JSON round trip. Failures are collected,
    not raised.

    ``threads`` sets torch's intra-op threads for the check (restored afterwards; None leaves
    them): batch-1 forwards of single blocks gain little from more threads and, on a machine
    whose cores are busy, lose several-fold to thread synchronisation.
    """
    report = CheckReport()
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for slot in slots:
            block = get_submodule(teacher, slot.path)
            x = torch.randn(1, *slot.in_shape, generator=generator)
            for spec in zoo[slot.name]:
                error = check_candidate(spec, slot, block, x)
                report.candidates += 1
                if error:
                    log.warning("candidate %s of slot %s failed the check: %s", spec.key, slot.name, error)
                    report.failures.append(CheckFailure(slot.name, spec.key, error))
                if on_candidate is not None:
                    on_candidate(slot, spec, error)
    finally:
        torch.set_num_threads(saved_threads)
    report.seconds = time.perf_counter() - start
    return report
