"""NVIDIA ModelOpt's FastNAS pruning for compare_methods.py, where ``nvidia-modelopt`` installs and runs.

FastNAS constrains FLOPs (or parameters), not latency, so the benchmark bisects on the FLOPs
fraction until the pruned network measures within the budget beside the teacher, as it does for
Torch-Pruning's channel ratio. :func:`fastnas_unavailable` says, from a real search on a tiny
network on the CPU, why it cannot run here (None when it can).
"""
from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn


def fastnas_prune(
    model: nn.Module, example: torch.Tensor, flops_fraction: float, batches: Iterable, score: Callable[[nn.Module], float],
    checkpoint: Path,
) -> nn.Module:
    """A copy of ``model`` pruned by ``mtp.prune(mode="fastnas")`` to ``flops_fraction`` of its FLOPs;
    ``batches`` (input, label) recalibrate BatchNorm (a forward loop over them: without one ModelOpt
    wants a queue of 50 batches), ``score`` (higher is better) ranks sub-networks,
    ``checkpoint`` holds the search state (the per-layer sensitivity is computed once per model there)."""
    import modelopt.torch.prune as mtp

    net = copy.deepcopy(model).eval()
    batches = list(batches)
    with contextlib.redirect_stdout(io.StringIO()):  # ModelOpt draws its profiling tables on stdout
        pruned, _ = mtp.prune(
            net, mode="fastnas", constraints={"flops": f"{100 * flops_fraction:.4g}%"}, dummy_input=example,
            config={"forward_loop": lambda m: [m(x) for x, _ in batches], "score_func": score,
                    "checkpoint": str(checkpoint), "verbose": False},
        )
    return pruned.eval()  # the search exports the best sub-network to plain torch modules


def min_flops_fraction(model: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of FastNAS's smallest sub-network of ``model`` as a fraction of its own: below it no
    FLOPs constraint can be met."""
    import modelopt.torch.nas as mtn
    from modelopt.torch.nas.utils import inference_flops, sample
    from modelopt.torch.prune.pruning import PruneModeRegistry

    net = copy.deepcopy(model).eval()
    full = inference_flops(net, dummy_input=example)
    space = mtn.convert(net, mode="fastnas", registry=PruneModeRegistry)
    sample(space, min)
    return inference_flops(space, dummy_input=example) / full


def fastnas_unavailable() -> str | None:
    """Why FastNAS cannot be a baseline here, found by running it (import, the smallest sub-network's
    FLOPs, then a search at 75 % of the FLOPs of a two-layer CNN of 64 channels, which FastNAS prunes in steps of 32, on the CPU);
    None when it ran."""
    try:
        import modelopt.torch.prune  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA-only extension failing to load
        return f"nvidia-modelopt does not import ({type(e).__name__}: {str(e)[:300]})"
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 4))
    batches = [(torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))) for _ in range(2)]

    def score(m: nn.Module) -> float:
        with torch.no_grad():
            return float(sum((m(x).argmax(1) == y).float().mean() for x, y in batches))

    try:
        with tempfile.TemporaryDirectory(prefix="hant-fastnas-") as tmp:
            floor = min_flops_fraction(net, batches[0][0])
            fastnas_prune(net, batches[0][0], max(0.75, floor), batches, score, Path(tmp) / "search.pth")
    except Exception as e:
        return f"FastNAS search failed on the CPU ({type(e).__name__}: {str(e)[:300]})"
    return None
