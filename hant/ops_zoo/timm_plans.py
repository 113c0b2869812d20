"""Prune plans of timm's blocks (and torchvision's ResNet blocks, which name their layers alike): which
layers share each inner channel group.

Registered on first use of ``pruning.prune_plans``; a class missing from the installed timm is
skipped. Blocks whose group cannot shrink without changing their outer shape (depthwise-separable,
a single conv) have no plan.
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

from .pruning import PrunePlan


def _timm_class(module: str, name: str) -> type | None:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _is_conv(m: nn.Module | None) -> bool:
    return isinstance(m, nn.Conv2d)


def _is_norm(m: nn.Module | None) -> bool:
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def _gate_paths(block: nn.Module, name: str, reduce: str, expand: str) -> tuple[list[str], list[str]]:
    """(extra inputs, extra outputs) of a squeeze-excite gate over the group, if the block has one."""
    se = getattr(block, name, None)
    if se is not None and _is_conv(getattr(se, reduce, None)) and _is_conv(getattr(se, expand, None)):
        return [f"{name}.{reduce}"], [f"{name}.{expand}"]
    return [], []


def _resnet_bottleneck(block: nn.Module) -> list[PrunePlan]:
    if block.conv2.groups == 1:
        return [
            PrunePlan(out_convs=["conv1"], norms=["bn1"], in_convs=["conv2"]),
            PrunePlan(out_convs=["conv2"], norms=["bn2"], in_convs=["conv3"]),
        ]
    # ResNeXt: conv1 -> grouped conv2 -> conv3 form one group of whole conv groups
    c2 = block.conv2
    if c2.in_channels != c2.out_channels:
        return []
    return [
        PrunePlan(
            out_convs=["conv1"],
            norms=["bn1", "bn2"],
            in_convs=["conv3"],
            grouped=["conv2"],
            unit=c2.out_channels // c2.groups,
        )
    ]


def _regnet_bottleneck(block: nn.Module) -> list[PrunePlan]:
    c2 = block.conv2.conv
    if c2.in_channels != c2.out_channels or not (_is_norm(block.conv1.bn) and _is_norm(block.conv2.bn)):
        return []
    se_in, se_out = _gate_paths(block, "se", "fc1", "fc2")  # the gate sits between conv2 and conv3
    if c2.groups == 1:  # a plain conv2 separates two groups, as in a ResNet bottleneck
        return [
            PrunePlan(out_convs=["conv1.conv"], norms=["conv1.bn"], in_convs=["conv2.conv"]),
            PrunePlan(out_convs=["conv2.conv"], norms=["conv2.bn"], in_convs=["conv3.conv", *se_in], extra_out=se_out),
        ]
    return [
        PrunePlan(
            out_convs=["conv1.conv"],
            norms=["conv1.bn", "conv2.bn"],
            in_convs=["conv3.conv", *se_in],
            grouped=["conv2.conv"],
            extra_out=se_out,
            unit=c2.out_channels // c2.groups,
        )
    ]


def _inverted_residual(block: nn.Module) -> list[PrunePlan]:
    if block.conv_dw.groups != block.conv_dw.in_channels or not _is_conv(getattr(block, "conv_pw", None)):
        return []
    se_in, se_out = _gate_paths(block, "se", "conv_reduce", "conv_expand")
    return [
        PrunePlan(
            out_convs=["conv_pw"],
            norms=["bn1", "bn2"],
            in_convs=["conv_pwl", *se_in],
            depthwise=["conv_dw"],
            extra_out=se_out,
        )
    ]


def _edge_residual(block: nn.Module) -> list[PrunePlan]:
    se_in, se_out = _gate_paths(block, "se", "conv_reduce", "conv_expand")
    return [PrunePlan(out_convs=["conv_exp"], norms=["bn1"], in_convs=["conv_pwl", *se_in], extra_out=se_out)]


def _mlp_plan(mlp_path: str, mlp: nn.Module, role: str) -> PrunePlan | None:
    """The hidden units of a timm ``Mlp`` (fc1 -> act -> norm -> fc2), if it has no extra layers."""
    if type(mlp).__name__ != "Mlp" or not hasattr(mlp, "fc1") or not hasattr(mlp, "fc2"):
        return None
    norm = getattr(mlp, "norm", None)
    norms = [f"{mlp_path}.norm"] if _is_norm(norm) else []
    if norm is not None and not norms and not isinstance(norm, nn.Identity):
        return None
    return PrunePlan(out_convs=[f"{mlp_path}.fc1"], norms=norms, in_convs=[f"{mlp_path}.fc2"], role=role)


def _convnext_block(block: nn.Module) -> list[PrunePlan]:
    return [_mlp_plan("mlp", block.mlp, "channels")]


def _vit_block(block: nn.Module) -> list[PrunePlan]:
    plans = [_mlp_plan("mlp", block.mlp, "mlp")]
    attn = block.attn
    if type(attn).__name__ == "Attention" and hasattr(attn, "qkv") and hasattr(attn, "proj"):
        norms = ["attn.norm"] if _is_norm(getattr(attn, "norm", None)) else []
        extra = ["attn.gate"] if isinstance(getattr(attn, "gate", None), nn.Linear) else []
        plans.append(
            PrunePlan(
                out_convs=["attn.qkv"],
                norms=norms,
                in_convs=["attn.proj"],
                extra_out=extra,
                unit=attn.head_dim,
                attention="attn",
                role="heads",
            )
        )
    return plans


_TIMM_PLANS: tuple[tuple[str, str, Callable[[nn.Module], list[PrunePlan]]], ...] = (
    ("timm.models.resnet", "BasicBlock", lambda b: [PrunePlan(out_convs=["conv1"], norms=["bn1"], in_convs=["conv2"])]),
    ("timm.models.resnet", "Bottleneck", _resnet_bottleneck),
    ("torchvision.models.resnet", "BasicBlock", lambda b: [PrunePlan(out_convs=["conv1"], norms=["bn1"], in_convs=["conv2"])]),
    ("torchvision.models.resnet", "Bottleneck", _resnet_bottleneck),
    ("timm.models.regnet", "Bottleneck", _regnet_bottleneck),
    ("timm.models._efficientnet_blocks", "InvertedResidual", _inverted_residual),
    ("timm.models._efficientnet_blocks", "EdgeResidual", _edge_residual),
    ("timm.models.convnext", "ConvNeXtBlock", _convnext_block),
    ("timm.models.vision_transformer", "Block", _vit_block),
)


def register_timm_plans(register: Callable[[type], Callable]) -> None:
    """Register the plans above with ``register`` (``pruning.register_prune_plan``)."""
    for module, name, fn in _TIMM_PLANS:
        cls = _timm_class(module, name)
        if cls is not None:
            register(cls)(fn)
