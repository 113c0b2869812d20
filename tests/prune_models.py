"""Small networks for the pruning tests, registered with timm (a recipe names them; a test loads this
file as a plugin): conv blocks into Flatten -> Linear, and Inception-ResNet-style concatenation blocks."""
from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


def conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class FlattenHead(nn.Module):
    """Two strided conv blocks, then the feature map flattened into a two-layer classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 16, **_: object) -> None:
        super().__init__()
        self.blocks = nn.Sequential(conv_bn(in_chans, 16, stride=2), conv_bn(16, 32, stride=2))
        side = img_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * side * side, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


class InceptionRes(nn.Module):
    """Three branches concatenated, projected back by a 1x1 conv and added to the input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.b1 = conv_bn(c, 8, 1)
        self.b2 = nn.Sequential(conv_bn(c, 8, 1), conv_bn(8, 12))
        self.b3 = nn.Sequential(conv_bn(c, 4, 1), conv_bn(4, 8), conv_bn(8, 8))
        self.proj = nn.Sequential(nn.Conv2d(28, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.proj(torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)))


class InceptionNet(nn.Module):
    """A stem, two Inception-ResNet blocks, a widening conv and a pooled linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, **_: object) -> None:
        super().__init__()
        self.stem = conv_bn(in_chans, 16, stride=2)
        self.blocks = nn.Sequential(InceptionRes(16), InceptionRes(16))
        self.neck = conv_bn(16, 32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.neck(self.blocks(self.stem(x))).mean((2, 3)))


@register_model
def prune_test_flatten(pretrained: bool = False, **kwargs) -> nn.Module:
    return FlattenHead(**kwargs)


@register_model
def prune_test_inception(pretrained: bool = False, **kwargs) -> nn.Module:
    return InceptionNet(**kwargs)
