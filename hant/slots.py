"""Slots: the replaceable sites of a teacher network, found by registered block type or by pattern."""
from __future__ import annotations

import fnmatch
import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import SlotDiscoveryError

log = logging.getLogger(__name__)

SLOT_KINDS = ("conv_block", "transformer_block", "module")


def spatial_stride(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Down-sampling factor from a (C, H, W) input to a (C', H', W') output; 1 for other shapes."""
    if len(in_shape) != 3 or len(out_shape) != 3:
        return 1
    return max(1, round(in_shape[1] / out_shape[1]))


@dataclass(frozen=True)
class Slot:
    """A replaceable site in the teacher; plain data with per-sample input and output shapes."""

    name: str
    path: str
    kind: str
    block_type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    block_hash: str
    out_nonnegative: bool = False
    """True when the teacher block's output is never negative (it ends in a ReLU-like activation)."""
    macs: int | None = None
    """Per-sample multiply-accumulates of the block's convolutions and linear layers (None: unknown)."""

    @property
    def stride(self) -> int:
        """Spatial down-sampling factor of a conv slot (1 when shapes keep their size)."""
        return spatial_stride(self.in_shape, self.out_shape)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Slot":
        return cls(
            name=d["name"],
            path=d["path"],
            kind=d["kind"],
            block_type=d["block_type"],
            in_shape=tuple(d["in_shape"]),
            out_shape=tuple(d["out_shape"]),
            block_hash=d["block_hash"],
            out_nonnegative=bool(d.get("out_nonnegative", False)),
            macs=None if d.get("macs") is None else int(d["macs"]),
        )


_BLOCK_TYPES: dict[type, str] = {}
_timm_blocks_registered = False


def register_block_type(cls: type, kind: str) -> type:
    """Register a module class as a replaceable block of the given kind (see ``SLOT_KINDS``)."""
    if kind not in SLOT_KINDS:
        raise ValueError(f"unknown slot kind {kind!r}; choose one of {SLOT_KINDS}")
    _BLOCK_TYPES[cls] = kind
    return cls


def registered_block_types() -> dict[type, str]:
    """The block classes that discovery recognises, with their slot kind."""
    _register_timm_blocks()
    return dict(_BLOCK_TYPES)


# timm and torchvision block classes recognised without any per-model code: (module, class names, kind).
# Classes missing from the installed timm or torchvision are skipped.
_TIMM_BLOCKS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("timm.models.resnet", ("BasicBlock", "Bottleneck"), "conv_block"),
    ("torchvision.models.resnet", ("BasicBlock", "Bottleneck"), "conv_block"),
    ("torchvision.models.mobilenetv2", ("InvertedResidual",), "conv_block"),
    (
        "timm.models._efficientnet_blocks",
        ("ConvBnAct", "DepthwiseSeparableConv", "InvertedResidual", "EdgeResidual", "UniversalInvertedResidual"),
        "conv_block",
    ),
    ("timm.models.regnet", ("Bottleneck", "PreBottleneck"), "conv_block"),
    ("timm.models.convnext", ("ConvNeXtBlock",), "conv_block"),
    ("timm.models.vision_transformer", ("Block", "ResPostBlock", "ParallelScalingBlock"), "transformer_block"),
)


def _register_timm_blocks() -> None:
    global _timm_blocks_registered
    if _timm_blocks_registered:
        return
    _timm_blocks_registered = True
    import importlib

    for module_name, class_names, kind in _TIMM_BLOCKS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in class_names:
            cls = getattr(module, name, None)
            if isinstance(cls, type):
                _BLOCK_TYPES.setdefault(cls, kind)


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def layer_macs(layer: nn.Module, output: torch.Tensor) -> int:
    """Per-sample multiply-accumulates of one convolution or linear layer, from its output."""
    per_sample = output[0].numel() if output.dim() > 0 else 1
    if isinstance(layer, nn.modules.conv._ConvNd):
        fan_in = layer.in_channels // layer.groups
        for k in layer.kernel_size:
            fan_in *= k
        return per_sample * fan_in
    if isinstance(layer, nn.Linear):
        return per_sample * layer.in_features
    return 0


def structure_hash(module: nn.Module) -> str:
    """Hash of a module's structure (its repr), independent of its weights."""
    return hashlib.sha256(repr(module).encode()).hexdigest()[:12]


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path, with an error that names the path."""
    try:
        return model.get_submodule(path)
    except AttributeError as e:
        raise SlotDiscoveryError(f"the model has no module at path {path!r}") from e


def set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the submodule at a dotted path."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, new)


def _select_paths(model: nn.Module, patterns: Sequence[str] | None) -> list[tuple[str, str]]:
    """(path, kind) of every outermost matching module, in definition order."""
    types = registered_block_types()
    chosen: list[tuple[str, str]] = []
    for path, module in model.named_modules():
        if not path:
            continue
        if any(path.startswith(p + ".") for p, _ in chosen):
            continue
        if patterns:
            if any(fnmatch.fnmatchcase(path, pat) for pat in patterns):
                kind = next((k for c, k in types.items() if isinstance(module, c)), "module")
                chosen.append((path, kind))
        else:
            kind = next((k for c, k in types.items() if isinstance(module, c)), None)
            if kind is not None:
                chosen.append((path, kind))
    return chosen


@torch.no_grad()
def discover_slots(
    model: nn.Module,
    example_input: torch.Tensor,
    patterns: Sequence[str] | None = None,
) -> list[Slot]:
    """Find the replaceable blocks of ``model`` and their per-sample input/output shapes.

    Blocks are recognised by registered type (see ``register_block_type``) unless ``patterns``
    (fnmatch patterns over module paths, e.g. ``"layer*.?"``) name them explicitly.
    """
    chosen = _select_paths(model, patterns)
    if not chosen:
        if patterns:
            raise SlotDiscoveryError(
                f"no module path of {type(model).__name__} matches the slot patterns {list(patterns)}; "
                "list the paths with model.named_modules() and adjust the patterns"
            )
        raise SlotDiscoveryError(
            f"{type(model).__name__} has no block of a registered type; name its slots by module-path "
            "pattern, e.g. `slots: {patterns: [\"blocks.*\"]}` in the recipe, `--slots 'blocks.*'` or "
            "hant.optimize(..., slots={\"patterns\": [\"blocks.*\"]}), or register the block class with "
            "hant.register_block_type(MyBlock, \"conv_block\")"
        )
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], bool]] = {}
    macs: dict[str, int] = {}
    handles = []

    def count_hook(path: str):
        def hook(layer: nn.Module, args: tuple, output) -> None:
            if isinstance(output, torch.Tensor):
                macs[path] = macs.get(path, 0) + layer_macs(layer, output)

        return hook

    rejected: dict[str, list[str]] = {}

    def make_hook(path: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            if len(args) != 1 or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
                rejected.setdefault(type(module).__name__, []).append(path)
                return
            shapes[path] = (tuple(args[0].shape[1:]), tuple(output.shape[1:]), bool((output >= 0).all()))

        return hook

    for path, _ in chosen:
        block = model.get_submodule(path)
        handles.append(block.register_forward_hook(make_hook(path)))
        for layer in block.modules():
            if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
                handles.append(layer.register_forward_hook(count_hook(path)))
    was_training = model.training
    model.eval()
    try:
        model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for block_type, paths in rejected.items():
        log.warning(
            "skipped %d %s block(s) that do not map one tensor to one tensor (first: %r)", len(paths), block_type, paths[0]
        )
    slots = []
    for path, kind in chosen:
        if path not in shapes:
            continue  # defined but never called in forward, or rejected above
        module = model.get_submodule(path)
        in_shape, out_shape, nonneg = shapes[path]
        slots.append(
            Slot(
                name=path,
                path=path,
                kind=kind,
                block_type=qualified_name(type(module)),
                in_shape=in_shape,
                out_shape=out_shape,
                block_hash=structure_hash(module),
                out_nonnegative=nonneg,
                macs=macs.get(path, 0),
            )
        )
    if not slots:
        raise SlotDiscoveryError(
            f"no block of {type(model).__name__} can be a slot (skipped: {sorted(p for ps in rejected.values() for p in ps)}"
            " do not map one tensor to one tensor); "
            "name other blocks as slots by module-path pattern (`slots: {patterns: [...]}` or `--slots`)"
        )
    return slots


def slots_to_json(slots: Iterable[Slot]) -> list[dict]:
    return [s.to_dict() for s in slots]


def slots_from_json(items: Iterable[dict]) -> list[Slot]:
    return [Slot.from_dict(d) for d in items]
