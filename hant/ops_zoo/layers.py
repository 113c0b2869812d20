"""Building blocks shared by the generated candidate families."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish}


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least one divisor)."""
    return max(divisor, int(round(value / divisor)) * divisor)


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


def zero_init_last_norm(body: nn.Module) -> None:
    """Zero the scale of the body's last BatchNorm, so a residual candidate starts as identity."""
    norms = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d)]
    if norms:
        nn.init.zeros_(norms[-1].weight)


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
        if residual:
            zero_init_last_norm(body)

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor, target: torch.Tensor) -> None:
        """Data-dependent start for a body without residual: scale its last BatchNorm so the
        output is the least-squares best multiple of the random features for ``target``."""
        norms = [m for m in self.body.modules() if isinstance(m, nn.BatchNorm2d)]
        if self.residual or not norms:
            return
        was_training = self.training
        self.eval()
        y = self(x)
        self.train(was_training)
        scale = (y * target).sum() / y.pow(2).sum().clamp_min(1e-12)
        if scale > 0:
            norms[-1].weight.mul_(scale)
            norms[-1].bias.mul_(scale)

    def forward(self, x):
        y = self.body(x)
        if self.residual:
            y = y + x
        return self.post(y)
