"""torch.distributed in one place: who this process is, and waiting for the others."""
from __future__ import annotations

import torch.distributed as dist


def is_distributed() -> bool:
    """Whether this process is one of several started by torchrun (a process group exists)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True in the process that writes shared files (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process arrives (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU).

    Returns whether a group was joined; a plain single-process launch joins none.
    """
    import os

    import torch

    if is_distributed() or "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True
