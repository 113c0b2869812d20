"""A user's own code as hant.optimize and recipe factories see it: a small ResNet-like CNN built from
torchvision's BasicBlock, plain DataLoaders over the embedded digits, and a short training loop."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.resnet import BasicBlock

from hant.data import digits_splits

IMAGE_SIZE = 16


def _stage(cin: int, cout: int, stride: int) -> BasicBlock:
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride, downsample=down)


class SmallResNet(nn.Module):
    """Stem, four torchvision BasicBlocks, pooled linear head."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, widths: tuple[int, ...] = (8, 16, 32, 32)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(_stage(cin, w, 1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def build(**kwargs) -> SmallResNet:
    """The architecture (random weights; hant loads the trained ones)."""
    torch.manual_seed(0)
    return SmallResNet(**kwargs)


def make_splits() -> tuple[DataLoader, DataLoader, DataLoader]:
    """Plain DataLoaders over the digits at 16x16: shuffled training batches, ordered validation and test."""
    s = digits_splits(IMAGE_SIZE, seed=0)
    return (
        DataLoader(s.train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)),
        DataLoader(s.val, batch_size=128),
        DataLoader(s.test, batch_size=128),
    )


def train(model: nn.Module, loader: DataLoader, epochs: int = 6, lr: float = 0.1) -> nn.Module:
    """A plain SGD loop, as a user would have trained the model."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def build_plain(num_classes: int = 10) -> nn.Module:
    """A CNN of plain layers in a Sequential: no block of a registered type."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
    )
