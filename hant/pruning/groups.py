"""Coupled channels of a whole network, from Torch-Pruning's dependency graph.

Torch-Pruning traces the network with autograd and, for every convolution or linear layer, finds
every layer whose channels must go with that layer's output channels: norms, depthwise
convolutions, the layers that consume them, through additions (residual connections), gates,
concatenations, splits and reshapes (a flatten before a linear layer), each with the indices the
channel has in that layer. A :class:`ChannelGroup` holds one such set, rooted at its first
producing layer.

A grouped convolution whose input and output are one group (ResNeXt, RegNet) passes it through,
as a depthwise one does, in whole convolution groups: such a group's ``unit`` is the channels of one.
A group cannot be pruned (``fixed``, with the ``reason``) when it feeds the network's output, runs
through another grouped convolution, lies outside every slot, meets a slot together with more streams
than the width program enumerates, or when cutting it alone breaks the forward pass or changes the
network's output shape (a layer type whose coupling Torch-Pruning does not know, attention heads).

A group whose layers all lie inside one slot is that slot's *inner* group; one reaching across
slots (a ResNet stage's residual width, the output of a stage of MBConv blocks) is a *stream*.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import PruneError

log = logging.getLogger(__name__)

__all__ = ["ChannelGroup", "GroupGraph", "Member", "check_prunable", "trace_groups"]

MAX_SLOT_STREAMS = 2
"""Streams one slot may meet: a slot's candidates enumerate every combination of their widths."""
_NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)
_PRIORITY = ("other", "consumer", "norm", "producer", "depthwise")
"""A layer met twice in a group (a depthwise conv cuts both sides) takes the later kind."""


@dataclass(frozen=True)
class Member:
    """One layer (or parameter) of a group: what to cut there, at which indices."""

    path: str
    """Module path, or the dotted name of a parameter outside any layer (a position embedding)."""
    prune: Callable
    """Torch-Pruning's pruning function of the layer: ``prune(layer, removed_indices)``."""
    pruning_dim: int
    outputs: bool
    """True when the function cuts the layer's output channels (a producer or a norm)."""
    local: tuple[int, ...]
    """Indices the group's channels have in this layer."""
    root: tuple[int, ...]
    """For each of ``local``, the group channel it belongs to."""
    is_parameter: bool = False


@dataclass
class ChannelGroup:
    """Channels that are kept or dropped together, with every layer they run through."""

    name: str
    width: int
    members: list[Member] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    """Member path -> ``producer``, ``consumer``, ``norm``, ``depthwise`` or ``other``."""
    unit: int = 1
    """Channels kept or dropped together (those of one group of a grouped convolution)."""
    fixed: bool = False
    """True when the group cannot be pruned (``reason`` says why)."""
    reason: str = ""
    slot: str | None = None
    """The slot path holding every layer of an inner group; None for a stream or an unslotted group."""
    slots: list[str] = field(default_factory=list)
    """Paths of the slots any layer of the group lies in."""

    def _of(self, kind: str) -> list[str]:
        return [p for p, k in self.kinds.items() if k == kind]

    @property
    def producers(self) -> list[str]:
        """Convolutions / linear layers whose output channels are the group."""
        return self._of("producer")

    @property
    def consumers(self) -> list[str]:
        """Convolutions / linear layers whose input channels are the group."""
        return self._of("consumer")

    @property
    def norms(self) -> list[str]:
        return self._of("norm")

    @property
    def depthwise(self) -> list[str]:
        return self._of("depthwise")

    @property
    def paths(self) -> list[str]:
        """Every layer the group runs through."""
        return list(self.kinds)

    @property
    def is_stream(self) -> bool:
        return not self.fixed and self.slot is None and bool(self.slots)

    def freeze(self, reason: str) -> None:
        if not self.fixed:
            self.fixed, self.reason = True, reason


@dataclass
class GroupGraph:
    """The channel groups of a network, and per slot the groups at its input, output and inside it."""

    groups: dict[str, ChannelGroup]
    slot_inputs: dict[str, list[str]]
    """Slot path -> groups in its input tensor (made outside the slot, consumed inside it)."""
    slot_outputs: dict[str, list[str]]
    """Slot path -> groups in its output tensor (made inside the slot, reaching outside it)."""
    layer_in_shape: dict[str, tuple[int, ...]]
    """Per-sample input shape of every layer (for measuring it alone)."""

    def inner(self, slot_path: str) -> list[ChannelGroup]:
        """The prunable groups entirely inside the slot at ``slot_path``."""
        return [g for g in self.groups.values() if g.slot == slot_path and not g.fixed]

    def streams(self) -> list[ChannelGroup]:
        """Prunable groups that reach across slots."""
        return [g for g in self.groups.values() if g.is_stream]

    def frozen(self) -> dict[str, str]:
        """Group -> why it is not pruned."""
        return {g.name: g.reason for g in self.groups.values() if g.fixed}


class _GroupedConv(nn.Conv2d):
    """The class a grouped convolution with as many inputs as outputs wears while it is traced, so
    that Torch-Pruning couples its input and output channels through :class:`_GroupedConvPruner`."""


class _GroupedConvPruner(tp.pruner.function.ConvPruner):
    """Drops whole convolution groups of a grouped convolution (input and output channels at once)."""

    def prune_out_channels(self, layer: nn.Module, idxs) -> nn.Module:
        unit = layer.out_channels // layer.groups
        keep = sorted(set(range(layer.out_channels)) - {int(i) for i in idxs})
        if len(keep) % unit or any(keep[i] % unit != i % unit for i in range(len(keep))):
            raise PruneError(f"a grouped convolution keeps whole groups of {unit} channels, not {len(keep)} of them")
        index = torch.tensor(keep, device=layer.weight.device)
        layer.weight = nn.Parameter(layer.weight.detach().index_select(0, index), requires_grad=layer.weight.requires_grad)
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias.detach().index_select(0, index), requires_grad=layer.bias.requires_grad)
        layer.out_channels = layer.in_channels = len(keep)
        layer.groups = len(keep) // unit
        return layer

    prune_in_channels = prune_out_channels


_GROUPED_PRUNER = _GroupedConvPruner()


def _is_grouped(m: nn.Module) -> bool:
    return type(m) is nn.Conv2d and 1 < m.groups < m.in_channels and m.in_channels == m.out_channels


def _torch_pruning_groups(model: nn.Module, example: torch.Tensor) -> tuple[tp.DependencyGraph, list]:
    """Torch-Pruning's dependency graph of ``model`` and its groups (full indices), traced in eval mode."""
    grouped = [m for m in model.modules() if _is_grouped(m)]
    was_training = model.training
    model.eval()
    for m in grouped:
        m.__class__ = _GroupedConv
    try:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(
                model, example_inputs=example, verbose=False, customized_pruners={_GroupedConv: _GROUPED_PRUNER}
            )
        return dg, list(dg.get_all_groups())
    except Exception as e:  # autograd tracing fails in many ways on exotic forward passes
        raise PruneError(f"Torch-Pruning cannot trace {type(model).__name__} for channel pruning: {e}") from e
    finally:
        for m in grouped:
            m.__class__ = nn.Conv2d
        model.train(was_training)


def _inside(path: str, slot: str) -> bool:
    return path == slot or path.startswith(slot + ".") or slot == ""  # "": the traced module itself


def _slot_of(path: str, slot_paths: list[str]) -> str | None:
    return next((s for s in slot_paths if _inside(path, s)), None)


def _kind(layer: object, outputs: bool) -> str:
    if isinstance(layer, nn.modules.conv._ConvNd):
        if (layer.groups == layer.out_channels and layer.groups > 1) or _is_grouped(layer):
            return "depthwise"  # passes the group through, input and output channels at once
        return "producer" if outputs else "consumer"
    if isinstance(layer, nn.Linear):
        return "producer" if outputs else "consumer"
    if isinstance(layer, _NORMS):
        return "norm"
    return "other"


def _group(dg: tp.DependencyGraph, tp_group, names: dict, order: dict[str, int]) -> ChannelGroup:
    members, kinds, fixed, unit = [], {}, "", 1
    for item in tp_group:
        dep, idxs = item
        target = dep.target.module
        outputs = dg.is_out_channel_pruning_fn(dep.handler)
        is_param = isinstance(target, nn.Parameter)
        if outputs and not dep.target.outputs and not is_param:
            fixed = fixed or "it feeds the network's output"
        path = names.get(id(target))
        if path is None:
            continue  # Torch-Pruning's own bookkeeping node (add, concat, reshape): nothing to cut
        members.append(Member(path, dep.handler, dep.target.pruning_dim, outputs, tuple(int(j) for j in idxs),
                              tuple(int(r) for r in item.root_idxs), is_param))
        kind = "other" if is_param else _kind(target, outputs)
        kinds[path] = max(kind, kinds.get(path, "other"), key=_PRIORITY.index)
        if isinstance(target, nn.modules.conv._ConvNd) and 1 < target.groups < target.in_channels:
            if _is_grouped(target):
                unit = math.lcm(unit, target.out_channels // target.groups)
            else:
                fixed = fixed or f"it runs through the grouped convolution {path}"
    root = members[0]
    name = min((m.path for m in members if kinds[m.path] == "producer"), key=order.__getitem__, default=root.path)
    g = ChannelGroup(name, len(set(root.root)), members, dict(sorted(kinds.items(), key=lambda kv: order.get(kv[0], -1))), unit)
    if fixed:
        g.freeze(fixed)
    return g


def trace_groups(model: nn.Module, example: torch.Tensor, slot_paths: list[str], check: bool = True) -> GroupGraph:
    """The channel groups of ``model`` (traced on ``example``, a batch) and how they meet its slots.

    With ``check``, every group is cut to half its width once and the network run: a group whose cut
    breaks the forward pass or changes the output's shape is frozen, with the error as its reason.
    """
    dg, tp_groups = _torch_pruning_groups(model, example)
    names = {id(m): p for p, m in model.named_modules()}
    names.update({id(p): n for n, p in model.named_parameters()})
    order = {p: i for i, (p, _) in enumerate(model.named_modules())}
    order.update({n: len(order) + i for i, (n, _) in enumerate(model.named_parameters())})
    groups: dict[str, ChannelGroup] = {}
    for tp_group in tp_groups:
        g = _group(dg, tp_group, names, order)
        groups.setdefault(g.name, g)
    groups = dict(sorted(groups.items(), key=lambda kv: order[kv[0]]))  # network order, as the layers are defined
    graph = _place(groups, slot_paths, _layer_shapes(model, example))
    if check:
        _check_cuts(model, example, graph)
    for name, reason in graph.frozen().items():
        log.debug("channel group %s is not pruned: %s", name, reason)
    return graph


def _place(groups: dict[str, ChannelGroup], slot_paths: list[str], shapes: dict) -> GroupGraph:
    slot_inputs: dict[str, list[str]] = {s: [] for s in slot_paths}
    slot_outputs: dict[str, list[str]] = {s: [] for s in slot_paths}
    for g in groups.values():
        owners = {p: _slot_of(p, slot_paths) for p in g.paths}
        g.slots = sorted({o for o in owners.values() if o is not None}, key=slot_paths.index)
        if g.slots and all(o is not None for o in owners.values()) and len(g.slots) == 1:
            g.slot = g.slots[0]
        if not g.slots:
            g.freeze("no layer of it lies in a slot")
        made_in = {owners[m.path] for m in g.members if m.outputs and g.kinds[m.path] == "producer"}
        for s in g.slots:
            if g.slot == s:
                continue
            if any(owners[m.path] == s and not m.outputs for m in g.members) and made_in - {s}:
                slot_inputs[s].append(g.name)
            if s in made_in:
                slot_outputs[s].append(g.name)
    graph = GroupGraph(groups, slot_inputs, slot_outputs, shapes)
    for s in slot_paths:
        streams = [n for n in dict.fromkeys(slot_inputs[s] + slot_outputs[s]) if groups[n].is_stream]
        if len(streams) > MAX_SLOT_STREAMS:
            for n in streams:
                groups[n].freeze(f"slot {s} meets {len(streams)} streams (a concatenation); at most {MAX_SLOT_STREAMS} are pruned per slot")
    return graph


def _check_cuts(model: nn.Module, example: torch.Tensor, graph: GroupGraph) -> None:
    from .apply import first_channels, pruned_copy  # apply imports this module's types

    live = {n: g for n, g in graph.groups.items() if not g.fixed}
    with torch.no_grad():
        want = model.eval()(example).shape

    def failure(names: list[str]) -> str | None:
        halves = first_channels({n: max(live[n].unit, live[n].width // 2 // live[n].unit * live[n].unit) for n in names})
        try:
            with torch.no_grad():
                got = pruned_copy(model, graph.groups, halves).eval()(example).shape
        except Exception as e:  # any failure of the cut network is the group's reason
            return f"cutting it breaks the forward pass ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        return None if got == want else f"cutting it changes the network's output shape {tuple(want)} to {tuple(got)}"

    if not live or failure(list(live)) is None:
        return
    for name in live:
        why = failure([name])
        if why is not None:
            graph.groups[name].freeze(why)
            log.info("channel group %s is not pruned: %s", name, why)


def _layer_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for path, m in model.named_modules():
        if path and not any(True for _ in m.children()):

            def hook(mod: nn.Module, args: tuple, path: str = path) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    shapes.setdefault(path, tuple(args[0].shape[1:]))

            handles.append(m.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return shapes


def check_prunable(graph: GroupGraph, model_name: str) -> None:
    """Raise a one-line :class:`PruneError` when no group of the network can be pruned."""
    if not graph.streams() and not any(g.slot and not g.fixed for g in graph.groups.values()):
        reasons = sorted(set(graph.frozen().values()))[:3]
        raise PruneError(f"{model_name} has no channel group that hant can prune ({'; '.join(reasons) or 'no groups'})")
