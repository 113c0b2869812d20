"""Generated convolutional families: conv-bn-act, depthwise-separable and MBConv replacements."""
from __future__ import annotations

from itertools import product

from torch import nn

from ...slots import Slot
from ..layers import ConvBnAct, ResidualBody, SqueezeExcite
from ..registry import CandidateFamily, register_family
from ..spec import CandidateSpec, SlotSignature


def _is_spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def _fits(slot: Slot) -> bool:
    """A conv family fits a slot that maps (C, H, W) to (C', H/s, W/s) with an integer stride."""
    if not (_is_spatial(slot.in_shape) and _is_spatial(slot.out_shape)):
        return False
    _, h, w = slot.in_shape
    _, ho, wo = slot.out_shape
    s = slot.stride
    return ho == -(-h // s) and wo == -(-w // s)


def _frame(sig: SlotSignature) -> tuple[int, int, int, bool, str | None]:
    cin, cout, stride = sig.in_shape[0], sig.out_shape[0], sig.stride
    residual = tuple(sig.in_shape) == tuple(sig.out_shape)
    post = "relu" if sig.out_nonnegative else None
    return cin, cout, stride, residual, post


@register_family("conv_bn_act")
class ConvBnActFamily(CandidateFamily):
    """One k×k convolution with batch norm (and a residual connection where shapes match)."""

    def candidates(self, slot: Slot, kernels: tuple[int, ...] = (1, 3, 5)) -> list[dict]:
        return [{"k": int(k)} for k in kernels] if _fits(slot) else []

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = _frame(spec.signature)
        return ResidualBody(ConvBnAct(cin, cout, spec.params["k"], stride, act=None), residual, post)


@register_family("dwsep")
class DepthwiseSeparable(CandidateFamily):
    """Depthwise k×k convolution then pointwise 1×1 projection (MobileNetV1 style)."""

    def candidates(
        self, slot: Slot, kernels: tuple[int, ...] = (3, 5, 7), acts: tuple[str, ...] = ("relu",)
    ) -> list[dict]:
        return [{"k": int(k), "act": a} for k, a in product(kernels, acts)] if _fits(slot) else []

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = _frame(spec.signature)
        p = spec.params
        body = nn.Sequential(
            ConvBnAct(cin, cin, p["k"], stride, groups=cin, act=p["act"]),
            ConvBnAct(cin, cout, 1, act=None),
        )
        return ResidualBody(body, residual, post)


@register_family("mbconv")
class MBConv(CandidateFamily):
    """Inverted residual: 1×1 expansion, depthwise k×k, optional squeeze-excite, 1×1 projection."""

    def candidates(
        self,
        slot: Slot,
        kernels: tuple[int, ...] = (3, 5, 7),
        expansions: tuple[int, ...] = (1, 2, 3, 4, 6),
        se: tuple[bool, ...] = (False, True),
        acts: tuple[str, ...] = ("relu", "silu", "hardswish"),
    ) -> list[dict]:
        if not _fits(slot):
            return []
        return [
            {"k": int(k), "e": int(e), "se": bool(s), "act": a} for k, e, s, a in product(kernels, expansions, se, acts)
        ]

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = _frame(spec.signature)
        p = spec.params
        mid = cin * p["e"]
        layers: list[nn.Module] = []
        if p["e"] != 1:
            layers.append(ConvBnAct(cin, mid, 1, act=p["act"]))
        layers.append(ConvBnAct(mid, mid, p["k"], stride, groups=mid, act=p["act"]))
        if p["se"]:
            layers.append(SqueezeExcite(mid, max(8, cin // 4)))
        layers.append(ConvBnAct(mid, cout, 1, act=None))
        return ResidualBody(nn.Sequential(*layers), residual, post)
