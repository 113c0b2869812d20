"""Generated convolutional families: conv-bn-act, depthwise-separable and bottleneck replacements.

Each ends in the slot's output activation and adds a residual connection where input and output
shapes match (``ResidualBody``); candidates estimated above ``max_cost`` × the teacher block's
multiply-accumulates are not offered (``max_cost: null`` offers all).
"""

from __future__ import annotations

from torch import nn

from ...slots import Slot
from ..layers import ConvBnAct, ResidualBody, SqueezeExcite, make_divisible
from ..registry import CandidateFamily, register_family
from ..spec import CandidateSpec
from ._common import DEFAULT_MAX_COST, bools, costed_grid, frame, ints, pixels


@register_family("conv_bn_act")
class ConvBnActFamily(CandidateFamily):
    """One k×k convolution with batch norm (and a residual connection where shapes match)."""

    def candidates(
        self, slot: Slot, kernels: tuple[int, ...] = (1, 3, 5), max_cost: float | None = DEFAULT_MAX_COST
    ) -> list[dict]:
        cin, cout, hw = slot.in_shape[0], slot.out_shape[0], pixels(slot.out_shape)
        return costed_grid(slot, max_cost, lambda p: cin * cout * p["k"] ** 2 * hw, k=ints(kernels))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = frame(spec.signature)
        return ResidualBody(ConvBnAct(cin, cout, spec.params["k"], stride, act=None), residual, post)


@register_family("dwsep")
class DepthwiseSeparable(CandidateFamily):
    """Depthwise k×k convolution then pointwise 1×1 projection (MobileNetV1 style)."""

    def candidates(
        self,
        slot: Slot,
        kernels: tuple[int, ...] = (3, 5, 7),
        acts: tuple[str, ...] = ("relu",),
        max_cost: float | None = DEFAULT_MAX_COST,
    ) -> list[dict]:
        cin, cout, hw = slot.in_shape[0], slot.out_shape[0], pixels(slot.out_shape)
        return costed_grid(
            slot, max_cost, lambda p: (cin * p["k"] ** 2 + cin * cout) * hw, k=ints(kernels), act=list(acts)
        )

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = frame(spec.signature)
        p = spec.params
        body = nn.Sequential(
            ConvBnAct(cin, cin, p["k"], stride, groups=cin, act=p["act"]),
            ConvBnAct(cin, cout, 1, act=None),
        )
        return ResidualBody(body, residual, post)


def bottleneck_width(cout: int, ratio: float) -> int:
    """Inner width of a bottleneck candidate: ``ratio`` × output channels, a multiple of 8."""
    return make_divisible(cout * ratio, 8)


@register_family("bottleneck")
class Bottleneck(CandidateFamily):
    """ResNet bottleneck: 1×1 reduction to ``r`` × the output width, k×k (with the stride),
    optional squeeze-excite (SE-ResNet), 1×1 expansion; residual where shapes match. Ratios that
    round to the same inner width give one candidate."""

    def candidates(
        self,
        slot: Slot,
        kernels: tuple[int, ...] = (3, 5),
        ratios: tuple[float, ...] = (0.25, 0.5, 1.0),
        se: tuple[bool, ...] = (False, True),
        acts: tuple[str, ...] = ("relu", "silu", "hardswish"),
        max_cost: float | None = DEFAULT_MAX_COST,
    ) -> list[dict]:
        cin, cout = slot.in_shape[0], slot.out_shape[0]
        hw_in, hw_out = pixels(slot.in_shape), pixels(slot.out_shape)
        widths: dict[int, float] = {}
        for r in ratios:
            widths.setdefault(bottleneck_width(cout, float(r)), float(r))

        def macs(p: dict) -> int:
            mid = bottleneck_width(cout, p["r"])
            return cin * mid * hw_in + mid * mid * p["k"] ** 2 * hw_out + mid * cout * hw_out

        return costed_grid(slot, max_cost, macs, k=ints(kernels), r=list(widths.values()), se=bools(se), act=list(acts))

    def build(self, spec: CandidateSpec, teacher_block: nn.Module | None = None) -> nn.Module:
        cin, cout, stride, residual, post = frame(spec.signature)
        p = spec.params
        mid = bottleneck_width(cout, p["r"])
        body = nn.Sequential(
            ConvBnAct(cin, mid, 1, act=p["act"]),
            ConvBnAct(mid, mid, p["k"], stride, act=p["act"]),
            *([SqueezeExcite(mid, max(8, mid // 4))] if p["se"] else []),
            ConvBnAct(mid, cout, 1, act=None),
        )
        return ResidualBody(body, residual, post)
