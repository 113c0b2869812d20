"""Phase 1 across processes (torchrun): candidates sharded across ranks, results gathered everywhere.

Nothing here does anything in a single process. With torch.distributed initialised, each rank
trains and scores its own shard with the full data stream, and every rank gets every result.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

from ..distributed import is_distributed, rank, world_size

T = TypeVar("T")


def local_device() -> torch.device:
    """This rank's CUDA device (``LOCAL_RANK``) when CUDA is available, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def shard(items: Sequence[T], key: Callable[[T], str]) -> list[T]:
    """This rank's share of ``items``: every ``world``-th item in ``key`` order, from ``rank``."""
    return sorted(items, key=key)[rank() :: world_size()]


def gather_all(local: list[Any]) -> list[Any]:
    """Every rank's ``local`` items, concatenated in rank order, on every rank."""
    if not is_distributed():
        return list(local)
    parts: list[list[Any] | None] = [None] * world_size()
    dist.all_gather_object(parts, local)
    return [item for part in parts for item in part or []]
