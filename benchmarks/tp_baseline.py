"""Torch-Pruning baselines for compare_methods.py: its magnitude and Taylor pruners, uniform ratio.

Torch-Pruning prunes by a channel ratio, not a latency; compare_methods.py finds the ratio by
bisection on measured latency (:mod:`latency_bisect`). Architecture depends only on the ratio (every
layer loses the same share, rounded to ``round_to``), so one bisection serves both importances.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn


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
