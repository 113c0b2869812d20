"""Slot discovery: registered block types, fnmatch patterns, errors, and the Slot data type."""
from __future__ import annotations

import copy
import json
from itertools import pairwise

import pytest
import timm
import torch
from torch import nn

from hant import slots as slots_mod
from hant.errors import HantError, SlotDiscoveryError
from hant.slots import (
    Slot,
    discover_slots,
    get_submodule,
    register_block_type,
    registered_block_types,
    set_submodule,
    slots_from_json,
    slots_to_json,
    structure_hash,
)

BASIC_BLOCK = "timm.models.resnet.BasicBlock"
DWSEP = "timm.models._efficientnet_blocks.DepthwiseSeparableConv"
INVRES = "timm.models._efficientnet_blocks.InvertedResidual"


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


class _UserBlock(nn.Module):
    """A user's own residual block, unknown to hant until registered."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x) + x)


class _UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.body = nn.Sequential(_UserBlock(4), nn.Conv2d(4, 4, 1), _UserBlock(4))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


@pytest.fixture()
def isolated_block_types(monkeypatch):
    """A private copy of the block-type registry (timm types already in it), restored afterwards."""
    registered_block_types()
    monkeypatch.setattr(slots_mod, "_BLOCK_TYPES", dict(slots_mod._BLOCK_TYPES))
    return slots_mod._BLOCK_TYPES


# --- timm ResNet ---------------------------------------------------------------------------------


def test_resnet_basic_blocks_are_found_with_shapes_strides_and_sign(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(2, 1, 32, 32))
    assert [s.name for s in slots] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert [s.path for s in slots] == [s.name for s in slots]
    assert all(s.kind == "conv_block" for s in slots)
    assert all(s.block_type == BASIC_BLOCK for s in slots)
    # stem: stride-2 conv then the stride-2 conv that replaces max-pool -> 64 x 8 x 8 (per sample)
    assert [s.in_shape for s in slots] == [(64, 8, 8), (8, 8, 8), (16, 4, 4), (32, 2, 2)]
    assert [s.out_shape for s in slots] == [(8, 8, 8), (16, 4, 4), (32, 2, 2), (64, 1, 1)]
    assert [s.stride for s in slots] == [1, 2, 2, 2]
    # every BasicBlock ends in a ReLU
    assert all(s.out_nonnegative for s in slots)


def test_slot_shapes_match_the_real_block_io(tiny_resnet):
    """Each slot's shapes are what the block really sees and returns, batch dimension excluded."""
    x = _x(3, 1, 32, 32)
    slots = discover_slots(tiny_resnet, x)
    seen = {}
    hooks = [
        tiny_resnet.get_submodule(s.path).register_forward_hook(
            lambda m, a, o, p=s.path: seen.__setitem__(p, (tuple(a[0].shape), tuple(o.shape)))
        )
        for s in slots
    ]
    with torch.no_grad():
        tiny_resnet(x)
    for h in hooks:
        h.remove()
    for s in slots:
        assert seen[s.path] == ((3, *s.in_shape), (3, *s.out_shape))
    # consecutive blocks chain
    for a, b in pairwise(slots):
        assert a.out_shape == b.in_shape


def test_input_size_changes_the_recorded_shapes(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(1, 1, 64, 64))
    assert slots[0].in_shape == (64, 16, 16)
    assert slots[-1].out_shape == (64, 2, 2)


def test_discovery_leaves_the_model_untouched(tiny_resnet):
    tiny_resnet.train()
    running = tiny_resnet.layer1[0].bn1.running_mean.clone()
    discover_slots(tiny_resnet, _x(2, 1, 32, 32))
    assert tiny_resnet.training, "training mode must be restored"
    # the forward ran in eval mode: BatchNorm statistics did not move
    assert torch.equal(tiny_resnet.layer1[0].bn1.running_mean, running)
    assert all(len(m._forward_hooks) == 0 for m in tiny_resnet.modules()), "hooks must be removed"


def test_out_nonnegative_is_false_without_a_final_relu(tiny_resnet):
    tiny_resnet.layer2[0].act2 = nn.Identity()
    slots = {s.name: s for s in discover_slots(tiny_resnet, _x(2, 1, 32, 32))}
    assert not slots["layer2.0"].out_nonnegative
    assert slots["layer1.0"].out_nonnegative


def test_block_hash_follows_structure_not_weights(tiny_resnet):
    slots = {s.name: s for s in discover_slots(tiny_resnet, _x(1, 1, 32, 32))}
    # different channel counts -> different structure -> different hash
    assert len({s.block_hash for s in slots.values()}) == 4
    block = tiny_resnet.layer2[0]
    assert slots["layer2.0"].block_hash == structure_hash(block)
    other = copy.deepcopy(block)
    with torch.no_grad():
        for p in other.parameters():
            p.normal_()
    assert structure_hash(other) == structure_hash(block)
    other.act2 = nn.Identity()
    assert structure_hash(other) != structure_hash(block)


# --- timm EfficientNet ---------------------------------------------------------------------------


def test_efficientnet_blocks_are_found():
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", num_classes=10).eval()
    slots = discover_slots(model, _x(1, 3, 32, 32))
    expected = [f"blocks.{i}.{j}" for i, stage in enumerate(model.blocks) for j in range(len(stage))]
    assert [s.name for s in slots] == expected
    assert all(s.kind == "conv_block" for s in slots)
    assert slots[0].block_type == DWSEP
    assert {s.block_type for s in slots[1:]} == {INVRES}
    assert slots[0].in_shape == (32, 16, 16) and slots[0].out_shape == (16, 16, 16)
    by_name = {s.name: s for s in slots}
    assert by_name["blocks.1.0"].in_shape == (16, 16, 16)
    assert by_name["blocks.1.0"].out_shape == (24, 8, 8)
    assert by_name["blocks.1.0"].stride == 2
    assert by_name["blocks.1.1"].stride == 1
    assert slots[-1].out_shape == (320, 1, 1)
    for a, b in pairwise(slots):
        assert a.out_shape == b.in_shape
    # the projection of an MBConv block is linear: its output can be negative
    assert not any(s.out_nonnegative for s in slots)


# --- patterns ------------------------------------------------------------------------------------


def _plain_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0
        nn.ReLU(),  # 1
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),  # 2
        nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)),  # 3
        nn.AdaptiveAvgPool2d(1),  # 4
        nn.Flatten(),  # 5
        nn.Linear(16, 4),  # 6
    ).eval()


def test_patterns_name_slots_of_a_plain_sequential():
    model = _plain_model()
    slots = discover_slots(model, _x(2, 3, 16, 16), patterns=["2", "3"])
    assert [s.name for s in slots] == ["2", "3"]
    a, b = slots
    assert a.kind == b.kind == "module"
    assert a.block_type == "torch.nn.modules.container.Sequential"
    assert (a.in_shape, a.out_shape, a.stride) == ((8, 16, 16), (8, 16, 16), 1)
    assert (b.in_shape, b.out_shape, b.stride) == ((8, 16, 16), (16, 8, 8), 2)
    assert a.out_nonnegative and not b.out_nonnegative


def test_patterns_select_outermost_matches_in_definition_order():
    model = _plain_model()
    # "*" matches every path, including nested ones: only the outermost are slots
    slots = discover_slots(model, _x(2, 3, 16, 16), patterns=["*"])
    assert [s.name for s in slots] == [str(i) for i in range(7)]
    assert slots[6].in_shape == (16,) and slots[6].out_shape == (4,) and slots[6].stride == 1
    # a glob that matches inner layers of the Sequentials only
    slots = discover_slots(model, _x(2, 3, 16, 16), patterns=["[23].0"])
    assert [s.name for s in slots] == ["2.0", "3.0"]
    assert slots[1].block_type == "torch.nn.modules.conv.Conv2d"
    # order follows the model, not the pattern list
    slots = discover_slots(model, _x(2, 3, 16, 16), patterns=["6", "0"])
    assert [s.name for s in slots] == ["0", "6"]


def test_patterns_on_timm_keep_registered_kinds(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32), patterns=["layer[12].*", "layer3", "fc"])
    assert [s.name for s in slots] == ["layer1.0", "layer2.0", "layer3", "fc"]
    assert [s.kind for s in slots] == ["conv_block", "conv_block", "module", "module"]
    assert slots[2].block_type == "torch.nn.modules.container.Sequential"
    assert slots[3].in_shape == (64,) and slots[3].out_shape == (10,)


def test_pattern_matching_is_case_sensitive(tiny_resnet):
    with pytest.raises(SlotDiscoveryError):
        discover_slots(tiny_resnet, _x(1, 1, 32, 32), patterns=["LAYER1.0"])


def test_pattern_matching_nothing_raises_with_the_patterns():
    model = _plain_model()
    with pytest.raises(SlotDiscoveryError) as e:
        discover_slots(model, _x(1, 3, 16, 16), patterns=["blocks.*", "stage?"])
    assert "blocks.*" in str(e.value) and "stage?" in str(e.value)
    assert isinstance(e.value, HantError)


def test_model_without_registered_blocks_explains_patterns():
    model = _plain_model()
    with pytest.raises(SlotDiscoveryError) as e:
        discover_slots(model, _x(1, 3, 16, 16))
    msg = str(e.value)
    assert "Sequential" in msg
    assert "pattern" in msg
    assert "slots" in msg and "--slots" in msg


def test_a_slot_must_map_one_tensor_to_one_tensor():
    class Split(nn.Module):
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.split = Split()

        def forward(self, x):
            a, b = self.split(x)
            return a + b

    with pytest.raises(SlotDiscoveryError, match="split"):
        discover_slots(Net(), _x(1, 3, 4, 4), patterns=["split"])


def test_modules_never_called_are_not_slots():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Conv2d(3, 3, 1)
            self.unused = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.used(x)

    slots = discover_slots(Net(), _x(1, 3, 4, 4), patterns=["used", "unused"])
    assert [s.name for s in slots] == ["used"]


# --- user block types ----------------------------------------------------------------------------


def test_registered_user_block_is_discovered(isolated_block_types):
    model = _UserNet().eval()
    with pytest.raises(SlotDiscoveryError):
        discover_slots(model, _x(1, 3, 16, 16))
    assert register_block_type(_UserBlock, "conv_block") is _UserBlock
    assert registered_block_types()[_UserBlock] == "conv_block"
    slots = discover_slots(model, _x(2, 3, 16, 16))
    assert [s.name for s in slots] == ["body.0", "body.2"]
    assert all(s.kind == "conv_block" for s in slots)
    assert slots[0].block_type == f"{__name__}._UserBlock"
    assert slots[0].in_shape == slots[0].out_shape == (4, 8, 8)
    assert all(s.out_nonnegative for s in slots)


def test_register_block_type_rejects_an_unknown_kind(isolated_block_types):
    with pytest.raises(ValueError, match="conv_block"):
        register_block_type(_UserBlock, "attention")
    assert _UserBlock not in registered_block_types()


def test_user_registration_before_first_discovery_keeps_timm_blocks(monkeypatch, tiny_resnet):
    """In a fresh process the registry starts empty; registering a user block first must not hide
    timm's built-in block types from discovery."""
    monkeypatch.setattr(slots_mod, "_BLOCK_TYPES", {})  # the state of a freshly imported hant
    monkeypatch.setattr(slots_mod, "_timm_blocks_registered", False)
    register_block_type(_UserBlock, "conv_block")
    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32))
    assert [s.name for s in slots] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]


# --- Slot data -----------------------------------------------------------------------------------


def test_slot_dict_round_trip(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32))
    for s in slots:
        assert Slot.from_dict(s.to_dict()) == s
    # through JSON (tuples become lists and come back as tuples)
    back = slots_from_json(json.loads(json.dumps(slots_to_json(slots))))
    assert back == slots
    assert all(isinstance(s.in_shape, tuple) and isinstance(s.out_shape, tuple) for s in back)
    assert [s.stride for s in back] == [1, 2, 2, 2]


def test_slot_from_dict_defaults_out_nonnegative():
    d = {
        "name": "a",
        "path": "a",
        "kind": "module",
        "block_type": "x.Y",
        "in_shape": [3, 8, 8],
        "out_shape": [3, 4, 4],
        "block_hash": "0" * 12,
    }
    s = Slot.from_dict(d)
    assert s.out_nonnegative is False
    assert s.stride == 2


def test_get_and_set_submodule(tiny_resnet):
    assert get_submodule(tiny_resnet, "layer2.0") is tiny_resnet.layer2[0]
    with pytest.raises(SlotDiscoveryError, match="layer9"):
        get_submodule(tiny_resnet, "layer9.0")
    new = nn.Identity()
    set_submodule(tiny_resnet, "layer2.0.act2", new)
    assert tiny_resnet.layer2[0].act2 is new
