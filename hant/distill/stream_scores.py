"""Scores of narrower residual streams: the teacher with one stream cut, judged after a linear adaptation.

A ``stream_cut`` candidate is scored with the stream channels it drops filled in from the teacher
(``scoring.py``), so its score is its own damage on the channels it keeps. The damage of the narrower
stream itself is scored here, once per stream and width, for the program's stream slot. Every point
where the stream enters or leaves a slot gets its dropped channels replaced by their least-squares
prediction from the kept ones (per pixel, fitted on the teacher's own training activations): a linear
function of the kept channels is what the layers that read the stream can fold into their weights
during fine-tuning, so only what it cannot predict counts as lost. The teacher so cut is then scored
as a swapped-in candidate is: its KL divergence from the teacher, its accuracy, and the fraction of
the stream's energy the prediction misses.

The blocks that read a cut stream are phase-1 candidates that learned to do without the dropped
channels; the layers outside the slots that read it (a classifier, a head convolution) learned
nothing, so :func:`compensated` folds the same prediction into their weights before the student is
cut. Zeroing the channels instead, as a single swapped-in block sees them, charged a quarter of the first
ResNet-18 stream 9-10 points of swap-in error at each of its three readers, where fine-tuned students
lose about one point for the whole cut (``docs/stream_widths.md``).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..pruning.streams import StreamLayout
from ..slots import Slot, get_submodule
from .scoring import Scores

__all__ = ["FIT_BATCHES", "RIDGE", "compensated", "stream_points", "score_streams"]

FIT_BATCHES = 8
"""Training batches whose activations the per-point least-squares predictions are fitted on."""
RIDGE = 1e-4
"""Ridge term of those fits, relative to the mean energy of a kept channel."""

Point = tuple[str, str]
"""Where a stream is seen: (slot path, ``in`` or ``out``)."""


def stream_points(layout: StreamLayout, slots: Sequence[Slot]) -> dict[str, list[Point]]:
    """Stream -> the slot inputs that read it and the slot outputs that write it."""
    points: dict[str, list[Point]] = {g: [] for g in layout.streams()}
    for slot in slots:
        g_in, g_out = layout.slot_streams(slot.path)
        if g_in is not None:
            points[g_in].append((slot.path, "in"))
        if g_out is not None:
            points[g_out].append((slot.path, "out"))
    return {g: p for g, p in points.items() if p}


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (N * ..., C) in float64."""
    return x.detach().movedim(1, -1).reshape(-1, x.shape[1]).double()


@contextmanager
def _hooked(model: nn.Module, points: Sequence[Point], fn) -> Iterator[None]:
    """``fn(point, tensor) -> tensor or None`` on every point's input (``in``) or output (``out``)."""
    handles = []
    for path, side in points:
        module = get_submodule(model, path)
        if side == "in":
            handles.append(module.register_forward_pre_hook(
                lambda _m, args, p=(path, side): None if (y := fn(p, args[0])) is None else (y, *args[1:])))
        else:
            handles.append(module.register_forward_hook(lambda _m, _a, out, p=(path, side): fn(p, out)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _grams(teacher: nn.Module, points: Sequence[Point], loader: DataLoader, batches: int,
           device: torch.device) -> dict[Point, torch.Tensor]:
    """Per point, the Gram matrix of its pixels with a constant column appended (float64)."""
    grams: dict[Point, torch.Tensor] = {}

    def collect(point: Point, x: torch.Tensor) -> None:
        p = _pixels(x)
        p = torch.cat([p, torch.ones(p.shape[0], 1, dtype=p.dtype, device=p.device)], 1)
        grams[point] = grams.get(point, 0) + p.T @ p

    with _hooked(teacher, points, collect):
        for x, _ in islice(loader, batches):
            teacher(x.to(device))
    return grams


def _predictor(gram: torch.Tensor, kept: int) -> torch.Tensor:
    """(kept + 1, dropped) least-squares weights predicting channels ``kept:`` from ``:kept`` and a constant."""
    c = gram.shape[0] - 1
    idx = torch.cat([torch.arange(kept), torch.tensor([c])]).to(gram.device)
    a = gram[idx][:, idx].clone()
    ridge = RIDGE * torch.diagonal(a)[:-1].mean().clamp_min(1e-12)
    a[:-1, :-1] += ridge * torch.eye(kept, dtype=a.dtype, device=a.device)
    return torch.linalg.solve(a, gram[idx][:, kept:c])


@torch.no_grad()
def _cut_scores(teacher: nn.Module, points: Sequence[Point], predictors: Mapping[Point, torch.Tensor], kept: int,
                reference: Sequence[torch.Tensor], loader: DataLoader, device: torch.device) -> Scores:
    """The teacher with the dropped channels at ``points`` replaced by their predictions, scored on ``loader``."""
    missed = energy = 0.0
    replaced: list[torch.Tensor] = []  # this batch's outputs: a slot's input may be one already

    def replace(point: Point, x: torch.Tensor) -> torch.Tensor | None:
        nonlocal missed, energy
        if any(x is r for r in replaced):
            return None
        p = _pixels(x)
        guess = p[:, :kept] @ predictors[point][:-1] + predictors[point][-1]
        missed += (p[:, kept:] - guess).pow(2).sum().item()
        energy += p.pow(2).sum().item()
        y = torch.cat([p[:, :kept], guess], 1).to(x.dtype)
        replaced.append(y.reshape(*x.shape[:1], *x.shape[2:], x.shape[1]).movedim(-1, 1).contiguous())
        return replaced[-1]

    kl = correct = samples = 0.0
    with _hooked(teacher, points, replace):
        for (x, y), log_p in zip(loader, reference):
            replaced.clear()
            logits = teacher(x.to(device)).float()
            kl += F.kl_div(F.log_softmax(logits, 1), log_p, log_target=True, reduction="sum").item()
            correct += (logits.argmax(1).cpu() == y).sum().item()
            samples += y.numel()
    return Scores(missed / max(energy, 1e-12), kl / max(1.0, samples), 100.0 * correct / max(1.0, samples))


@torch.no_grad()
def score_streams(teacher: nn.Module, layout: StreamLayout, slots: Sequence[Slot], widths: Mapping[str, Sequence[int]],
                  train_loader: DataLoader, val_loader: DataLoader, device: torch.device,
                  fit_batches: int = FIT_BATCHES) -> dict[str, dict[int, Scores]]:
    """Stream -> kept channels -> scores of the teacher with that stream cut to them (``widths``: the
    narrower widths to score per stream). The teacher's stream channels must be ordered by importance
    (``StreamLayout.reordered``), as in a run whose zoo offers ``stream_cut``."""
    teacher.eval()
    points = stream_points(layout, slots)
    wanted = {g: sorted({int(n) for n in ns if 0 < int(n) < layout.width(g)}, reverse=True)
              for g, ns in widths.items() if g in points}
    wanted = {g: ns for g, ns in wanted.items() if ns}
    if not wanted:
        return {}
    grams = _grams(teacher, [p for g in wanted for p in points[g]], train_loader, fit_batches, device)
    reference = [F.log_softmax(teacher(x.to(device)).float(), 1) for x, _ in val_loader]
    out: dict[str, dict[int, Scores]] = {}
    for g, ns in wanted.items():
        out[g] = {}
        for n in ns:
            predictors = {p: _predictor(grams[p], n).to(device) for p in points[g]}
            out[g][n] = _cut_scores(teacher, points[g], predictors, n, reference, val_loader, device)
    return out


def _fold(layer: nn.Module, predictor: torch.Tensor, kept: int) -> None:
    """Make ``layer`` (a linear layer or an ungrouped convolution reading the stream) compute on its
    first ``kept`` input channels what it computed with the rest predicted from them."""
    w = layer.weight.data
    p = predictor.to(w.dtype)
    drop = w[:, kept:]
    w[:, :kept] += torch.einsum("od...,kd->ok...", drop, p[:-1])
    if layer.bias is not None:  # the prediction's constant; a convolution's is exact away from its padding
        layer.bias.data += torch.einsum("od...,d->o", drop, p[-1])


@torch.no_grad()
def compensated(teacher: nn.Module, layout: StreamLayout, slots: Sequence[Slot], counts: Mapping[str, int],
                loader: DataLoader, device: torch.device, fit_batches: int = FIT_BATCHES) -> nn.Module:
    """A copy of ``teacher`` in which every layer outside the slots that reads a stream cut by ``counts``
    computes from the kept channels what it computed from all of them, the dropped ones predicted by
    least squares from the stream's last slot output (as :func:`score_streams` scores the cut).
    Cutting the copy to ``counts`` then loses only what the prediction misses. A convolution
    without a bias gets no constant term, and grouped convolutions are left as they are."""
    model = copy.deepcopy(teacher).eval()
    points = stream_points(layout, slots)
    order = {s.path: i for i, s in enumerate(slots)}
    folds = []
    for g, n in counts.items():
        outs = [p for p in points.get(g, []) if p[1] == "out"]
        layers = [get_submodule(model, path) for path in layout.outside_consumers(g)]
        layers = [m for m in layers if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]
        if n < layout.width(g) and outs and layers:
            folds.append((max(outs, key=lambda p: order[p[0]]), layers, n))
    if folds:
        grams = _grams(model.to(device), [point for point, _, _ in folds], loader, fit_batches, device)
        for point, layers, n in folds:
            predictor = _predictor(grams[point], n)
            for layer in layers:
                _fold(layer, predictor, n)
    return model.cpu()
