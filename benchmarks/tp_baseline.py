"""Torch-Pruning baselines for compare_methods.py: its magnitude and Taylor pruners, uniform ratio.

Torch-Pruning prunes by a channel ratio, not a latency, so the ratio is found by bisection on the
network measured end to end beside the teacher: the smallest ratio whose pruned network is within
the budget (less a margin). Architecture depends only on the ratio (every layer loses the same
share, rounded to ``round_to``), so one bisection serves both importances.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from hant.latency import LatencyTarget, measure


def tp_prune(model: nn.Module, example: torch.Tensor, ratio: float, importance: str, batches=(), round_to: int = 8) -> nn.Module:
    """A copy of ``model`` with every prunable layer's channels cut by ``ratio`` (Torch-Pruning's
    dependency graph keeps coupled channels together); ``taylor`` uses gradients of ``batches``."""
    net = copy.deepcopy(model).train()
    net.requires_grad_(True)
    imp = tp.importance.TaylorImportance() if importance == "taylor" else tp.importance.MagnitudeImportance(p=2)
    head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(net, example, importance=imp, pruning_ratio=ratio, ignored_layers=head, round_to=round_to)
    if importance == "taylor":
        net.zero_grad()
        for x, y in batches:
            F.cross_entropy(net(x), y).backward()
    pruner.step()
    net.zero_grad(set_to_none=True)
    return net.eval()


def bisect_ratio(
    model: nn.Module, example: torch.Tensor, input_shape: tuple, target: LatencyTarget, fraction: float,
    margin: float, iterations: int = 7, **measure_kwargs,
) -> tuple[float, float, list[dict]]:
    """The smallest uniform ratio (to 2^-iterations) whose network measures within ``fraction`` of
    the teacher beside it, less ``margin``; returns (ratio, its measured ms, the trials)."""
    lo, hi, hi_ms = 0.0, 0.95, None
    trials = []
    for _ in range(iterations):
        mid = (lo + hi) / 2
        net = tp_prune(model, example, mid, "magnitude")
        stats = measure([("teacher", model, input_shape), ("student", net, input_shape)], target, **measure_kwargs)
        ok = stats["student"].median_ms <= fraction * stats["teacher"].median_ms * (1 - margin)
        trials.append({"ratio": mid, "student_ms": stats["student"].median_ms, "teacher_ms": stats["teacher"].median_ms, "fits": ok})
        if ok:
            hi, hi_ms = mid, stats["student"].median_ms
        else:
            lo = mid
    if hi_ms is None:
        net = tp_prune(model, example, hi, "magnitude")
        hi_ms = measure([("student", net, input_shape)], target, **measure_kwargs)["student"].median_ms
    return hi, hi_ms, trials
