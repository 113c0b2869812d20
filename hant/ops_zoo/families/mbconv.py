"""Generated inverted-residual families: MBConv (MobileNetV2/EfficientNet) and fused-MBConv
(EfficientNetV2). Both end in the slot's output activation, add a residual where shapes match,
and skip candidates estimated above ``max_cost`` × the teacher block's multiply-accumulates."""

from __future__ import annotations

from torch import nn

from ...slots import Slot
from ..layers import ConvBnAct, ResidualBody, SqueezeExcite
from ..registry import CandidateFamily, register_family
from ..spec import CandidateSpec
from ._common import DEFAULT_MAX_COST, bools, costed_grid, frame, ints, pixels


def _se_width(cin: int) -> int:
    return max(8, cin // 4)


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
        max_cost: float | None = DEFAULT_MAX_COST,
    ) -> list[dict]:
        cin, cout = slot.in_shape[0], slot.out_shape[0]
        hw_in, hw_out = pixels(slot.in_shape), pixels(slot.out_shape)

        def macs(p: dict) -> int:
            mid = cin * p["e"]
            return (cin * mid * hw_in if p["e"] != 1 else 0) + mid * p["k"] ** 2 * hw_out + mid * cout * hw_out

        return costed_grid(slot, max_cost, macs, k=ints(kernels), e=ints(expansions), se=bools(se), act=list(acts))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = frame(spec.signature)
        p = spec.params
        mid = cin * p["e"]
        layers: list[nn.Module] = []
        if p["e"] != 1:
            layers.append(ConvBnAct(cin, mid, 1, act=p["act"]))
        layers.append(ConvBnAct(mid, mid, p["k"], stride, groups=mid, act=p["act"]))
        if p["se"]:
            layers.append(SqueezeExcite(mid, _se_width(cin)))
        layers.append(ConvBnAct(mid, cout, 1, act=None))
        return ResidualBody(nn.Sequential(*layers), residual, post)


@register_family("fused_mbconv")
class FusedMBConv(CandidateFamily):
    """Fused inverted residual: one k×k expansion convolution (with the stride), optional
    squeeze-excite, 1×1 projection."""

    def candidates(
        self,
        slot: Slot,
        kernels: tuple[int, ...] = (3, 5),
        expansions: tuple[int, ...] = (1, 2, 4, 6),
        se: tuple[bool, ...] = (False, True),
        acts: tuple[str, ...] = ("relu", "silu", "hardswish"),
        max_cost: float | None = DEFAULT_MAX_COST,
    ) -> list[dict]:
        cin, cout, hw = slot.in_shape[0], slot.out_shape[0], pixels(slot.out_shape)

        def macs(p: dict) -> int:
            mid = cin * p["e"]
            return (cin * mid * p["k"] ** 2 + mid * cout) * hw

        return costed_grid(slot, max_cost, macs, k=ints(kernels), e=ints(expansions), se=bools(se), act=list(acts))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = frame(spec.signature)
        p = spec.params
        mid = cin * p["e"]
        layers: list[nn.Module] = [ConvBnAct(cin, mid, p["k"], stride, act=p["act"])]
        if p["se"]:
            layers.append(SqueezeExcite(mid, _se_width(cin)))
        layers.append(ConvBnAct(mid, cout, 1, act=None))
        return ResidualBody(nn.Sequential(*layers), residual, post)


@register_family("uib")
class UniversalInvertedBottleneck(CandidateFamily):
    """MobileNetV4's universal inverted bottleneck: optional depthwise ``start``×``start`` before
    the 1×1 expansion, optional depthwise ``mid``×``mid`` after it, 1×1 projection (0 = absent).
    ``start`` only is ConvNeXt-like, both is ExtraDW; the stride goes to ``mid`` if present."""

    def candidates(
        self,
        slot: Slot,
        starts: tuple[int, ...] = (3, 5),
        mids: tuple[int, ...] = (0, 3, 5),
        expansions: tuple[int, ...] = (2, 4, 6),
        acts: tuple[str, ...] = ("relu",),
        max_cost: float | None = DEFAULT_MAX_COST,
    ) -> list[dict]:
        cin, cout = slot.in_shape[0], slot.out_shape[0]
        hw_in, hw_out = pixels(slot.in_shape), pixels(slot.out_shape)

        def macs(p: dict) -> int | None:
            k0, k1, mid = p["start"], p["mid"], cin * p["e"]
            if not (k0 or k1) and slot.stride > 1:
                return None  # nothing to carry the stride
            hw_mid = hw_out if not k1 else hw_in  # the expansion runs after a strided start dw
            return cin * k0 * k0 * hw_mid + cin * mid * hw_mid + mid * k1 * k1 * hw_out + mid * cout * hw_out

        return costed_grid(slot, max_cost, macs, start=ints(starts), mid=ints(mids), e=ints(expansions), act=list(acts))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = frame(spec.signature)
        p = spec.params
        k0, k1, mid = p["start"], p["mid"], cin * p["e"]
        layers: list[nn.Module] = []
        if k0:
            layers.append(ConvBnAct(cin, cin, k0, 1 if k1 else stride, groups=cin, act=None))
        layers.append(ConvBnAct(cin, mid, 1, act=p["act"]))
        if k1:
            layers.append(ConvBnAct(mid, mid, k1, stride, groups=mid, act=p["act"]))
        layers.append(ConvBnAct(mid, cout, 1, act=None))
        return ResidualBody(nn.Sequential(*layers), residual, post)
