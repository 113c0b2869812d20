"""hant.optimize on a torchvision ResNet-18 (not timm) trained with a plain DataLoader over the embedded
digits; the student is saved, then reloaded in a fresh process from its files alone.

    python examples/torchvision_digits.py            # a few minutes on one CPU core
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader

import hant
from hant.data import digits_splits

RUN_DIR = Path("runs/example-torchvision")
SIZE = 16


def build() -> nn.Module:
    """torchvision's ResNet-18 for 1-channel 16x16 digits: a 3x3 stem without max-pooling."""
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def train(model: nn.Module, loader: DataLoader, epochs: int) -> nn.Module:
    """The user's own training loop."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def main() -> None:
    torch.manual_seed(0)
    splits = digits_splits(image_size=SIZE)  # TensorDatasets of (image, label)
    train_loader = DataLoader(splits.train, batch_size=64, shuffle=True)
    val_loader, test_loader = DataLoader(splits.val, batch_size=256), DataLoader(splits.test, batch_size=256)
    model = train(build(), train_loader, epochs=3)

    result = hant.optimize(
        model, train_loader, val_loader, test=test_loader,
        example_input=torch.randn(1, 1, SIZE, SIZE),
        target=hant.LatencyTarget(batch_size=8, threads=1),
        budget=0.6,                       # of the teacher's measured latency
        factory=build,                    # rebuilds the architecture when the student is loaded
        run_dir=RUN_DIR,                  # a second run resumes here
        zoo={"families": {"identity": {}, "pruned": {"widths": [0.25, 0.5]}, "dwsep": {"kernels": [3]}}},
        profile={"rel_precision": 0.05, "time_budget_s": 10},
        distill={"epochs": 1}, finetune={"epochs": 2}, wandb={"mode": "off"},
    )
    r = result.report
    print(f"teacher {r['teacher']['accuracy']:.2f} % at {r['teacher']['latency_ms']:.3f} ms; "
          f"student {r['student']['accuracy']:.2f} % at {r['student']['latency_ms']:.3f} ms "
          f"({'within' if r['within_budget'] else 'over'} the {r['budget_ms']:.3f} ms budget)")
    saved = result.save(RUN_DIR / "saved-student")

    # A fresh process: the saved files and this file's `build` are all it needs.
    check = (
        "import torch, hant\n"
        f"student = hant.load_student({str(saved)!r}, allow_plugins=True)\n"
        f"print('reloaded', type(student).__name__, tuple(student(torch.randn(2, 1, {SIZE}, {SIZE})).shape))\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True)


if __name__ == "__main__":
    main()
