"""hant.optimize on a timm ResNet with a candidate family of one's own (examples/ghost_family.py) beside
the built-in ones; the student is reloaded in a fresh process, which imports the family again.

    python examples/timm_custom_family.py            # a few minutes on one CPU core
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import hant
from hant.data import digits_splits

RUN_DIR = Path("runs/example-timm-family")
FAMILY = Path(__file__).resolve().with_name("ghost_family.py")
SIZE = 16


def build() -> nn.Module:
    """A narrow timm ResNet (one BasicBlock per stage) for 1-channel digits."""
    return timm.create_model("resnet18", num_classes=10, in_chans=1, channels=(32, 64, 128, 256),
                             layers=(1, 1, 1, 1), replace_stem_pool=True)


def train(model: nn.Module, loader: DataLoader, epochs: int) -> nn.Module:
    """The user's own training loop."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def main() -> None:
    torch.manual_seed(0)
    splits = digits_splits(image_size=SIZE)
    train_loader = DataLoader(splits.train, batch_size=64, shuffle=True)
    model = train(build(), train_loader, epochs=5)

    result = hant.optimize(
        model, train_loader, splits.val, test=splits.test,   # Datasets are batched by hant
        example_input=torch.randn(1, 1, SIZE, SIZE),
        target={"batch_size": 8, "threads": 1},
        budget=0.7,
        factory=build,
        run_dir=RUN_DIR,
        zoo={"plugins": [str(FAMILY)], "families": {"identity": {}, "pruned": {"widths": [0.5]}, "ghost": {"kernels": [1, 3]}}},
        profile={"rel_precision": 0.05, "time_budget_s": 10},
        distill={"epochs": 2}, finetune={"epochs": 3}, wandb={"mode": "off"},
    )
    r = result.report
    print("chosen per slot:", r["selection"])
    print(f"student {r['student']['accuracy']:.2f} % at {r['student']['latency_ms']:.3f} ms, "
          f"{r['student']['speedup']:.2f}x the teacher ({r['teacher']['accuracy']:.2f} %)")
    saved = result.save(RUN_DIR / "saved-student")

    # A fresh process: arch.json names the plugin and the factory, both code, so loading needs allow_plugins.
    check = (
        "import torch, hant\n"
        f"student = hant.load_student({str(saved)!r}, allow_plugins=True)\n"
        "ghosts = [n for n, m in student.named_modules() if type(m).__name__ == 'GhostConv']\n"
        f"print('reloaded; ghost blocks:', ghosts, tuple(student(torch.randn(2, 1, {SIZE}, {SIZE})).shape))\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True)


if __name__ == "__main__":
    main()
