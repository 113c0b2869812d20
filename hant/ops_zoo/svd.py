"""Low-rank factorisation of a convolution or linear layer by truncated SVD.

A k×k convolution ``W`` (out × in·k·k) becomes a k×k convolution to ``r`` channels followed by a
1×1 convolution to ``out`` channels, with ``W ≈ U_r S_r V_rᵀ`` split as ``(U_r √S_r)(√S_r V_rᵀ)``.
At full rank the pair computes the same function as the layer.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def full_rank(layer: nn.Module) -> int:
    """The largest rank of a layer's weight viewed as a matrix (out × fan-in)."""
    w = layer.weight
    return min(w.shape[0], w[0].numel())


def saves(layer: nn.Module, rank: int) -> bool:
    """Whether a factorisation at ``rank`` has fewer weights (and multiply-accumulates) than the layer."""
    out, fan_in = layer.weight.shape[0], layer.weight[0].numel()
    return rank * (fan_in + out) < out * fan_in


def factorizable(layer: nn.Module) -> bool:
    """Non-grouped convolutions and linear layers can be factorised."""
    if isinstance(layer, nn.Linear):
        return True
    return isinstance(layer, nn.Conv2d) and layer.groups == 1


@contextmanager
def _single_thread() -> Iterator[None]:
    """LAPACK's SVD of these small matrices is fastest on one thread (and far slower when the
    machine's cores are contended), so run it on one and restore the caller's setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_CACHE_SIZE = 8
_cache: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = []


def _svd(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD of the weight as a matrix, remembered for the last few weights (each rank of a
    candidate family factorises the same teacher layers; a hit is checked by equal values)."""
    w = weight.detach()
    for saved, result in _cache:
        if saved.shape == w.shape and saved.dtype == w.dtype and saved.device == w.device and torch.equal(saved, w):
            return result
    with _single_thread():
        result = tuple(t.float() for t in torch.linalg.svd(w.flatten(1).double(), full_matrices=False))
    _cache.insert(0, (w.clone(), result))
    del _cache[_CACHE_SIZE:]
    return result


@torch.no_grad()
def _split(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) with ``second @ first`` the best rank-``rank`` approximation of the matrix."""
    u, s, vh = _svd(weight)
    root = s[:rank].sqrt()
    first = (root[:, None] * vh[:rank]).to(weight.dtype)
    second = (u[:, :rank] * root[None, :]).to(weight.dtype)
    return first, second


def factorize(layer: nn.Module, rank: int) -> nn.Sequential:
    """A two-layer replacement of ``layer`` at ``rank``, initialised from its truncated SVD.

    A convolution keeps its own class, kernel, stride, padding and dilation in the first layer
    (so ``same``-padded variants stay exact); the second layer is a 1×1 convolution with the
    original bias. A linear layer becomes two linear layers.
    """
    if not factorizable(layer):
        raise ValueError(f"cannot factorise {type(layer).__name__} (grouped or unsupported)")
    first_w, second_w = _split(layer.weight, rank)
    out = layer.weight.shape[0]
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, rank, bias=False)
        second = nn.Linear(rank, out, bias=has_bias)
        first.weight = nn.Parameter(first_w)
        second.weight = nn.Parameter(second_w)
    else:
        # same class and geometry (a deep copy that skips the weights it replaces)
        placeholders = {id(p): None for p in (layer.weight, layer.bias) if p is not None}
        first = copy.deepcopy(layer, placeholders)
        first.out_channels = rank
        first.weight = nn.Parameter(first_w.view(rank, *layer.weight.shape[1:]))
        first.bias = None
        second = nn.Conv2d(rank, out, 1, bias=has_bias)
        second.weight = nn.Parameter(second_w.view(out, rank, 1, 1))
    if has_bias:
        second.bias = nn.Parameter(layer.bias.detach().clone())
    return nn.Sequential(first, second)
