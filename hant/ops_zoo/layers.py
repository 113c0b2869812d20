"""Building blocks shared by the generated candidate families."""
from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish}


def make_act(name: str | None) -> nn.Module:
    """An activation by name; ``None`` gives identity."""
    if name is None:
        return nn.Identity()
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


class ConvBnAct(nn.Sequential):
    """Convolution, batch norm, optional activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "relu"):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            make_act(act),
        )


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, reduce, expand, sigmoid gate."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class ResidualBody(nn.Module):
    """``post(body(x) + x)`` when input and output shapes match, else ``post(body(x))``.

    ``post`` is the slot's output activation (ReLU when the teacher block's output is
    non-negative), so a candidate produces outputs in the same range as the block it replaces.
    """

    def __init__(self, body: nn.Module, residual: bool, post_act: str | None):
        super().__init__()
        self.body = body
        self.residual = residual
        self.post = make_act(post_act)

    def forward(self, x):
        y = self.body(x)
        if self.residual:
            y = y + x
        return self.post(y)
