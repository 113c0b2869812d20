"""Slot discovery on the block types hant knows without per-model code.

"Every block is a slot" means: every module of a registered block type that is not inside another
one becomes a slot, in definition order, so the slot count equals the number of those blocks.
Tiny variants of each architecture family keep this fast.
"""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from hant.slots import discover_slots, registered_block_types


def _outermost_blocks(model: nn.Module) -> list[str]:
    """Paths of registered-type modules not nested in another one (the definition of 'every block')."""
    types = tuple(registered_block_types())
    found: list[str] = []
    for path, module in model.named_modules():
        if path and isinstance(module, types) and not any(path.startswith(p + ".") for p in found):
            found.append(path)
    return found


TINY = {
    # name: (timm model, kwargs, input size, expected block class names)
    "efficientnet": ("efficientnet_b0", {}, 32, {"DepthwiseSeparableConv", "InvertedResidual"}),
    "efficientnetv2": ("test_efficientnet", {}, 32, {"ConvBnAct", "EdgeResidual", "InvertedResidual"}),
    "mobilenetv3": ("mobilenetv3_small_050", {}, 32, {"DepthwiseSeparableConv", "InvertedResidual", "ConvBnAct"}),
    "resnet": ("test_resnet", {}, 32, {"BasicBlock", "Bottleneck"}),
    "resnext": (
        "resnext50_32x4d",
        {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128), "cardinality": 4, "base_width": 16},
        32,
        {"Bottleneck"},
    ),
    "regnet": ("regnety_002", {}, 32, {"Bottleneck"}),
    "convnext": ("test_convnext", {}, 32, {"ConvNeXtBlock"}),
    "vit": ("test_vit", {"img_size": 32, "patch_size": 8}, 32, {"Block"}),
}


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny(request):
    name, kwargs, size, classes = TINY[request.param]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=4, **kwargs).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return request.param, model, discover_slots(model, x), classes


def test_every_block_is_a_slot(tiny):
    family, model, slots, classes = tiny
    assert [s.name for s in slots] == _outermost_blocks(model)
    assert {s.block_type.rsplit(".", 1)[1] for s in slots} == classes
    assert len(slots) >= 2


def test_slot_kinds_and_shapes(tiny):
    family, model, slots, _ = tiny
    for s in slots:
        if family == "vit":
            assert s.kind == "transformer_block"
            assert len(s.in_shape) == len(s.out_shape) == 2 and s.in_shape == s.out_shape  # tokens in, tokens out
        else:
            assert s.kind == "conv_block" and len(s.in_shape) == len(s.out_shape) == 3
        assert s.macs and s.macs > 0


@pytest.mark.parametrize(
    "name, count",
    [("resnet50", 16), ("convnext_tiny", 18), ("deit_tiny_patch16_224", 12), ("efficientnet_b0", 16)],
)
def test_block_counts_of_full_models(name, count):
    """The slot counts that the full-size models must give (structure only, tiny inputs)."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    assert len(_outermost_blocks(model)) == count


def test_vit_slot_shapes_are_tokens():
    model = timm.create_model("test_vit", pretrained=False, img_size=32, patch_size=8).eval()
    slots = discover_slots(model, torch.randn(1, 3, 32, 32))
    tokens = 1 + (32 // 8) ** 2 + getattr(model, "num_reg_tokens", 0)
    assert slots[0].in_shape == (tokens, model.embed_dim)


def test_macs_count_convolutions_and_linears():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(
                nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8)
            )
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.block(x).mean((2, 3)))

    slots = discover_slots(Net(), torch.randn(2, 4, 5, 5), patterns=["block", "head"])
    assert slots[0].macs == 8 * 25 * 4 * 9 + 8 * 25 * 9
    assert slots[1].macs == 2 * 8
