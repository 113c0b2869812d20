"""Coupled channels of a whole network: layers whose channels must be pruned together.

The network is traced with ``torch.fx`` (norm layers and parameter-free leaves kept whole) and
every tensor is given a channel-group id. A convolution or linear layer consumes its input's
group and starts a new one; norms, depthwise convolutions and element-wise functions pass a
group through; an addition (a residual connection) or a multiplication of two grouped tensors
(a squeeze-excitation gate) merges their groups. A group touching the network's input or
output, or a concatenation, cannot be pruned.

A group whose layers all lie inside one slot is that slot's *inner* group; one reaching across
slots (a ResNet stage's residual width, the output of a stage of MBConv blocks) is a *stream*.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ZooError

__all__ = ["ChannelGroup", "GroupGraph", "trace_groups"]

_MERGING = {operator.add, operator.iadd, operator.mul, operator.imul, torch.add, torch.mul, "add", "mul", "add_", "mul_"}
_CONCAT = {torch.cat, torch.concat, torch.stack, "cat"}
_NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass
class ChannelGroup:
    """Channels that are kept or dropped together, with every layer they run through."""

    name: str
    width: int
    producers: list[str] = field(default_factory=list)
    """Convolutions / linear layers whose output channels are the group."""
    consumers: list[str] = field(default_factory=list)
    """Convolutions / linear layers whose input channels are the group."""
    norms: list[str] = field(default_factory=list)
    depthwise: list[str] = field(default_factory=list)
    fixed: bool = False
    """True when the group cannot be pruned (network input or output, concatenation, grouped conv)."""
    slot: str | None = None
    """The slot path holding every layer of an inner group; None for a stream or an unslotted group."""
    slots: list[str] = field(default_factory=list)
    """Paths of the slots any layer of the group lies in."""

    @property
    def members(self) -> list[str]:
        return [*self.producers, *self.consumers, *self.norms, *self.depthwise]

    @property
    def is_stream(self) -> bool:
        return not self.fixed and self.slot is None and bool(self.slots)


@dataclass
class GroupGraph:
    """The channel groups of a network, and per slot the groups at its input, output and inside it."""

    groups: dict[str, ChannelGroup]
    slot_in: dict[str, str]
    slot_out: dict[str, str]
    layer_in_shape: dict[str, tuple[int, ...]]
    """Per-sample input shape of every grouped layer (for measuring it alone)."""

    def inner(self, slot_path: str) -> list[ChannelGroup]:
        """The prunable groups entirely inside the slot at ``slot_path``."""
        return [g for g in self.groups.values() if g.slot == slot_path and not g.fixed]

    def streams(self) -> list[ChannelGroup]:
        """Prunable groups that reach across slots."""
        return [g for g in self.groups.values() if g.is_stream]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _NORMS) or not any(True for _ in m.children())


class _Union:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.groups: list[ChannelGroup] = []

    def new(self, width: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.groups.append(ChannelGroup(name="", width=width, fixed=fixed))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        ga, gb = self.groups[ra], self.groups[rb]
        if ga.width != gb.width:
            ga.fixed = True  # broadcast of mismatched widths: leave both alone
        for attr in ("producers", "consumers", "norms", "depthwise"):
            getattr(ga, attr).extend(getattr(gb, attr))
        ga.fixed = ga.fixed or gb.fixed
        self.parent[rb] = ra
        return ra


def _tensor_args(node: fx.Node, gid: dict[fx.Node, int]) -> list[int]:
    found: list[int] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(gid[n]) if n in gid else None)
    return found


def trace_groups(model: nn.Module, example: torch.Tensor, slot_paths: list[str]) -> GroupGraph:
    """The channel groups of ``model`` (traced on ``example``, a batch) and how they meet its slots."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # fx raises many types on untraceable control flow
        raise ZooError(f"{type(model).__name__} cannot be traced by torch.fx for whole-network pruning: {e}") from e
    shapes = _layer_shapes(model, example)
    uf = _Union()
    gid: dict[fx.Node, int] = {}
    module_io: list[tuple[str, int, int]] = []
    for node in graph.nodes:
        args = _tensor_args(node, gid)
        if node.op == "placeholder":
            gid[node] = uf.new(int(example.shape[1]), fixed=True)
        elif node.op == "call_module":
            path = str(node.target)
            out = _module_group(model.get_submodule(path), path, args[0] if args else None, uf)
            if out is not None:
                gid[node] = out
                module_io.append((path, args[0] if args else out, out))
        elif node.op in ("call_function", "call_method"):
            if node.target in _CONCAT:
                for a in args:
                    uf.groups[uf.find(a)].fixed = True
            elif node.target in _MERGING and len(args) >= 2:
                merged = args[0]
                for a in args[1:]:
                    merged = uf.union(merged, a)
                gid[node] = merged
            elif args:
                gid[node] = args[0]
        elif node.op == "output":
            for a in args:
                uf.groups[uf.find(a)].fixed = True
    return _finish(uf, module_io, slot_paths, shapes)


def _module_group(m: nn.Module, path: str, inp: int | None, uf: _Union) -> int | None:
    if isinstance(m, nn.Conv2d):
        if inp is None:
            return None
        g = uf.groups[uf.find(inp)]
        if m.groups == 1:
            g.consumers.append(path)
            out = uf.new(m.out_channels)
            uf.groups[out].producers.append(path)
            return out
        if m.groups == m.in_channels == m.out_channels:
            g.depthwise.append(path)
            return inp
        g.fixed = True
        out = uf.new(m.out_channels, fixed=True)
        return out
    if isinstance(m, nn.Linear):
        if inp is None:
            return None
        uf.groups[uf.find(inp)].consumers.append(path)
        out = uf.new(m.out_features)
        uf.groups[out].producers.append(path)
        return out
    if isinstance(m, _NORMS) and inp is not None:
        uf.groups[uf.find(inp)].norms.append(path)
        return inp
    if any(True for _ in m.parameters(recurse=False)) and inp is not None:
        uf.groups[uf.find(inp)].fixed = True  # a parameterised layer we do not know how to cut
    return inp


def _inside(path: str, slot: str) -> bool:
    return path == slot or path.startswith(slot + ".")


def _slot_of(path: str, slot_paths: list[str]) -> str | None:
    return next((s for s in slot_paths if _inside(path, s)), None)


def _finish(uf: _Union, module_io: list[tuple[str, int, int]], slot_paths: list[str], shapes: dict) -> GroupGraph:
    groups: dict[str, ChannelGroup] = {}
    name_of: dict[int, str] = {}
    for i in range(len(uf.parent)):
        root = uf.find(i)
        if root in name_of:
            continue
        g = uf.groups[root]
        if not g.producers:
            g.fixed = True
        g.name = g.producers[0] if g.producers else f"input{len(groups)}"
        owners = [_slot_of(p, slot_paths) for p in g.members]
        g.slots = sorted({o for o in owners if o is not None}, key=slot_paths.index)
        if owners and all(o is not None for o in owners) and len(g.slots) == 1:
            g.slot = g.slots[0]
        if not g.slots:
            g.fixed = True
        name_of[root] = g.name
        groups[g.name] = g
    slot_in: dict[str, str] = {}
    slot_out: dict[str, str] = {}
    for path, inp, out in module_io:
        slot = _slot_of(path, slot_paths)
        if slot is None:
            continue
        slot_in.setdefault(slot, name_of[uf.find(inp)])
        slot_out[slot] = name_of[uf.find(out)]
    return GroupGraph(groups, slot_in, slot_out, shapes)


def _layer_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for path, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, *_NORMS)):

            def hook(mod: nn.Module, args: tuple, path: str = path) -> None:
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
