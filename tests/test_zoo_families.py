"""The candidate families: validity on every block kind, determinism, and teacher initialisation
(channel importance by L1, LAMP and Taylor; SVD low-rank; ViT head, MLP and attention removal)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from hant.ops_zoo import (
    CandidateSpec,
    SlotSignature,
    build_candidate,
    build_zoo,
    check_zoo,
    default_families,
    get_family,
    slot_candidates,
)
from hant.ops_zoo.importance import l1_importance, lamp_importance
from hant.pruning.importance import lamp_scores
from hant.ops_zoo.pruning import PrunePlan, select_keep
from hant.ops_zoo.selected import TaylorSelected
from hant.ops_zoo.svd import factorize
from hant.slots import discover_slots, get_submodule

CONV_FAMILIES = {"conv_bn_act", "dwsep", "mbconv", "fused_mbconv", "bottleneck", "uib", "pruned"}
VIT_FAMILIES = {"mlp_ratio", "fewer_heads", "slim_vit", "mlp_only"}

# every family, with options small enough that building every candidate takes milliseconds
FAST = {
    "identity": {},
    "pruned": {"widths": [0.5], "importance": ["l1", "lamp", "taylor"]},
    "lowrank": {"ranks": [0.25]},
    "conv_bn_act": {"kernels": [3]},
    "dwsep": {"kernels": [5]},
    "mbconv": {"kernels": [3], "expansions": [1, 4], "se": [True], "acts": ["hardswish"]},
    "fused_mbconv": {"kernels": [3], "expansions": [2], "se": [True], "acts": ["silu"]},
    "bottleneck": {"kernels": [3], "ratios": [0.25], "se": [True], "acts": ["relu"]},
    "uib": {"starts": [3], "mids": [0, 3], "expansions": [2]},
    "mlp_ratio": {"ratios": [1.0], "importance": ["l1", "taylor"]},
    "fewer_heads": {"importance": ["lamp", "taylor"]},
    "slim_vit": {"heads": [1], "ratios": [1.0], "importance": ["l1", "taylor"]},
    "mlp_only": {"ratios": [2.0]},
}

MODELS = {
    "efficientnet_b0": {},
    "test_efficientnet": {},
    "test_resnet": {},
    "resnext50_32x4d": {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128), "cardinality": 4, "base_width": 16},
    "regnety_002": {},
    "test_convnext": {},
    "test_vit": {"img_size": 32, "patch_size": 8},
}


def _model(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=4, **kwargs).eval()


def _slots(model: nn.Module, size: int = 32):
    return discover_slots(model, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1)))


def _representative(slots):
    """The first slot of each block type, a strided one and the last: every structure once."""
    chosen = {}
    for s in slots:
        chosen.setdefault(s.block_type, s)
    chosen.setdefault("strided", next((s for s in slots if s.stride > 1), slots[0]))
    chosen["last"] = slots[-1]
    return [s for s in slots if s in chosen.values()]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_family_checks_on_every_block_kind(name):
    model = _model(name, **MODELS[name])
    slots = _representative(_slots(model))
    zoo = build_zoo(model, slots, FAST)
    report = check_zoo(model, slots, zoo)
    assert report.ok, report.failures[:5]
    assert report.candidates == sum(len(v) for v in zoo.values())
    families = {spec.family for specs in zoo.values() for spec in specs}
    if name == "test_vit":
        assert families == {"keep", "identity", "lowrank"} | VIT_FAMILIES
    else:
        assert not families & VIT_FAMILIES, "transformer families must not apply to conv slots"
        assert families >= CONV_FAMILIES - {"pruned"} and "lowrank" in families
    if name != "efficientnet_b0":  # its first block (depthwise-separable) has no inner group
        assert "pruned" in families or name == "test_vit"


def test_default_zoo_of_efficientnet_b0_mbconv_slots():
    """At its own input size every MBConv (inverted residual) slot gets at least 150 candidates;
    building is checked on two slots only (the full check is `hant zoo efficientnet_b0 --check`)."""
    model = _model("efficientnet_b0")
    slots = _slots(model, 224)
    zoo = build_zoo(model, slots, default_families())
    for slot in slots:
        assert len(zoo[slot.name]) >= 150, (slot.name, len(zoo[slot.name]))
    subset = [s for s in slots if s.name == "blocks.6.0"]
    one_per_family = {s.name: list({spec.family: spec for spec in zoo[s.name]}.values()) for s in subset}
    assert check_zoo(model, subset, one_per_family).ok


def test_default_zoo_of_a_vit_block_is_all_transformer_families():
    model = _model("test_vit", img_size=32, patch_size=8)
    slots = _slots(model)[:1]
    zoo = build_zoo(model, slots, default_families())
    keys = [s.key for s in zoo[slots[0].name]]
    assert {k.split("[")[0] for k in keys} == {"keep", "identity", "lowrank"} | VIT_FAMILIES
    assert "fewer_heads[heads=1,importance=l1]" in keys
    assert "mlp_only[ratio=3]" in keys  # test_vit's own MLP ratio: the MLP kept whole
    assert "mlp_only[importance=l1,ratio=2]" in keys and "mlp_ratio[importance=l1,ratio=2.5]" in keys
    assert check_zoo(model, slots, zoo).ok


def test_building_twice_gives_the_same_module():
    for name in ("test_efficientnet", "test_vit"):
        model = _model(name, **MODELS[name])
        slots = _slots(model)
        zoo = build_zoo(model, slots[:2], FAST)
        for slot in slots[:2]:
            block = get_submodule(model, slot.path)
            for spec in zoo[slot.name]:
                spec = CandidateSpec.from_dict(spec.to_dict())
                modules = []
                for seed in (5, 5):
                    torch.manual_seed(seed)
                    modules.append(build_candidate(spec, block))
                a, b = (m.state_dict() for m in modules)
                assert repr(modules[0]) == repr(modules[1]) and a.keys() == b.keys(), spec.key
                assert all(torch.equal(a[k], b[k]) for k in a), spec.key


# --- generated families --------------------------------------------------------------------------


def _sig(cin=8, cout=16, hw=8, stride=2, nonneg=True) -> SlotSignature:
    return SlotSignature("conv_block", (cin, hw, hw), (cout, hw // stride, hw // stride), "x.B", "0", nonneg)


def test_fused_mbconv_structure():
    module = build_candidate(CandidateSpec("fused_mbconv", {"k": 5, "e": 4, "se": False, "act": "silu"}, _sig()))
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.groups) for c in convs] == [
        (8, 32, (5, 5), (2, 2), 1),
        (32, 16, (1, 1), (1, 1), 1),
    ]
    assert isinstance(module.post, nn.ReLU) and not module.residual


def test_bottleneck_and_uib_structure():
    sig = _sig(16, 16, 8, 1, nonneg=False)
    bottleneck = build_candidate(CandidateSpec("bottleneck", {"k": 3, "r": 0.5, "se": True, "act": "relu"}, sig))
    convs = [m for m in bottleneck.body.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs][0] == (16, 8) and convs[-1].out_channels == 16
    assert bottleneck.residual and isinstance(bottleneck.post, nn.Identity)
    uib = build_candidate(CandidateSpec("uib", {"start": 5, "mid": 3, "e": 2, "act": "relu"}, _sig()))
    convs = [m for m in uib.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.groups) for c in convs] == [(5, 1, 8), (1, 1, 1), (3, 2, 16), (1, 1, 1)]


def test_cost_cap_drops_only_expensive_candidates():
    model = _model("test_resnet")
    slot = _slots(model)[-1]
    block = get_submodule(model, slot.path)
    capped = {s.key for s in slot_candidates(slot, block, {"fused_mbconv": {"max_cost": 2.0}})}
    uncapped = {s.key for s in slot_candidates(slot, block, {"fused_mbconv": {"max_cost": None}})}
    assert capped < uncapped
    assert "fused_mbconv[act=relu,e=1,k=3,se=0]" in capped
    assert "fused_mbconv[act=relu,e=6,k=5,se=0]" not in capped


def test_conv_families_skip_transformer_slots_and_vice_versa():
    vit = _model("test_vit", img_size=32, patch_size=8)
    vit_slot = _slots(vit)[0]
    conv = _model("test_resnet")
    conv_slot = _slots(conv)[0]
    for name in ("conv_bn_act", "dwsep", "mbconv", "fused_mbconv", "bottleneck", "uib"):
        assert get_family(name).candidates(vit_slot) == []
    for name in VIT_FAMILIES:
        assert not get_family(name).applies_to(get_submodule(conv, conv_slot.path))
    assert not get_family("pruned").applies_to(get_submodule(vit, vit_slot.path))


# --- channel importance --------------------------------------------------------------------------


class _TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(9, 4, 1, bias=False)
        self.conv2 = nn.Conv2d(4, 2, 1, bias=False)

    def forward(self, x):
        return self.conv2(self.conv1(x))


def test_l1_and_lamp_rank_constructed_filters():
    """Filter A has one large weight (L1 5), filter B nine weights of 1 (L1 9): L1 prefers B,
    LAMP (normalised by the energy of the larger weights) prefers A's dominant weight."""
    block = _TwoConvs()
    w = torch.zeros(4, 9)
    w[0, 0] = 5.0  # A
    w[1] = 1.0  # B
    w[2] = 0.1
    w[3] = 0.2
    with torch.no_grad():
        block.conv1.weight.copy_(w.view(4, 9, 1, 1))
    plan = PrunePlan(out_convs=["conv1"], norms=[], in_convs=["conv2"])
    l1, lamp = l1_importance(block, plan), lamp_importance(block, plan)
    torch.testing.assert_close(l1, torch.tensor([5.0, 9.0, 0.9, 1.8]))
    assert select_keep(l1, 1).tolist() == [1]
    assert select_keep(lamp, 1).tolist() == [0]
    assert select_keep(l1, 3).tolist() == select_keep(lamp, 3).tolist() == [0, 1, 3]
    # LAMP of a layer: the largest weight scores 1, every score is in (0, 1]
    scores = lamp_scores(w)
    assert scores[0, 0] == 1.0 and float(scores.max()) == 1.0
    assert torch.isclose(scores[1, 0], torch.tensor(1 / 26)) or scores[1].max() <= 1 / 26 + 1e-6


def test_select_keep_takes_whole_units():
    scores = torch.tensor([1.0, 1.0, 9.0, 0.0, 0.0, 0.0, 3.0, 3.0])
    assert select_keep(scores, 4, unit=2).tolist() == [2, 3, 6, 7]  # units sum to 2, 9, 0, 6


def _dead_channel_resnet_block():
    """layer4.0 of test_resnet-like BasicBlock whose odd inner channels are dead (BN scale and bias 0)
    but have the largest conv1 filters, so L1 keeps the wrong half and Taylor the right one."""
    torch.manual_seed(0)
    model = timm.create_model(
        "resnet18", num_classes=4, channels=(8, 16, 32, 64), layers=(1, 1, 1, 1), replace_stem_pool=True
    ).eval()
    slots = _slots(model)
    slot = slots[-1]
    block = model.layer4[0]
    dead = torch.arange(1, 64, 2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        block.bn1.weight.copy_(torch.rand(64, generator=g) + 0.5)
        block.bn1.bias.copy_(torch.rand(64, generator=g))
        block.bn2.weight.copy_(torch.rand(64, generator=g) + 0.5)  # timm zero-initialises it
        block.conv1.weight[dead] *= 100
        block.bn1.weight[dead] = 0
        block.bn1.bias[dead] = 0
    return slot, block


def test_taylor_pruning_selects_channels_on_data():
    slot, block = _dead_channel_resnet_block()
    x = torch.randn(8, *slot.in_shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        target = block(x)
    specs = {
        s.params["importance"]: s
        for s in slot_candidates(slot, block, {"pruned": {"widths": [0.5], "importance": ["l1", "taylor"]}})[1:]
    }
    l1 = build_candidate(specs["l1"], block).eval()
    assert torch.equal(l1.conv1.weight, block.conv1.weight[1::2]), "L1 keeps the large (dead) filters"

    taylor = build_candidate(specs["taylor"], block)
    assert isinstance(taylor, TaylorSelected)
    shapes = {k: v.shape for k, v in taylor.state_dict().items()}
    params_before = [id(p) for p in taylor.parameters()]
    taylor.init_from_batch(x, target)
    assert {k: v.shape for k, v in taylor.state_dict().items()} == shapes, "structure must not depend on data"
    assert [id(p) for p in taylor.parameters()] == params_before, "weights are updated in place (optimizers keep them)"
    assert torch.equal(taylor.block.conv1.weight, block.conv1.weight[0::2])
    with torch.no_grad():
        torch.testing.assert_close(taylor.eval()(x), target, rtol=1e-5, atol=1e-5)
    # the teacher is left as it was, and the reference to it is dropped
    assert not any(p.grad is not None for p in block.parameters())
    assert taylor._source == ()
    # rebuilt from the spec alone (as load_student does), the structure is the same
    rebuilt = build_candidate(CandidateSpec.from_dict(specs["taylor"].to_dict()), block)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def _vit_block():
    model = _model("test_vit", img_size=32, patch_size=8)
    slot = _slots(model)[0]
    return slot, model.blocks[0]


def test_fewer_heads_drops_the_least_important_head():
    slot, block = _vit_block()
    dim, hd = block.attn.proj.in_features, block.attn.head_dim
    with torch.no_grad():
        block.attn.proj.weight[:, :hd] = 0  # head 0 contributes nothing ...
        for part in range(3):
            block.attn.qkv.weight[part * dim : part * dim + hd] *= 50  # ... but has the largest q/k/v rows
    x = torch.randn(4, *slot.in_shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        target = block(x)
    specs = {
        s.params["importance"]: s
        for s in slot_candidates(slot, block, {"fewer_heads": {"importance": ["l1", "taylor"]}})[1:]
    }
    assert [s.params["heads"] for s in specs.values()] == [1, 1]
    l1 = build_candidate(specs["l1"], block).eval()
    assert l1.attn.num_heads == 1 and l1.attn.qkv.out_features == 3 * hd and l1.attn.proj.in_features == hd
    assert torch.equal(l1.attn.proj.weight, block.attn.proj.weight[:, :hd])  # L1 kept the dead head
    taylor = build_candidate(specs["taylor"], block)
    taylor.init_from_batch(x, target)
    assert torch.equal(taylor.block.attn.proj.weight, block.attn.proj.weight[:, hd:])
    assert torch.equal(taylor.block.attn.qkv.weight[:hd], block.attn.qkv.weight[hd : 2 * hd])
    with torch.no_grad():
        torch.testing.assert_close(taylor.eval()(x), target, rtol=1e-4, atol=1e-5)


def test_mlp_ratio_keeps_live_hidden_units_and_mlp_only_drops_attention():
    slot, block = _vit_block()
    hidden = block.mlp.fc1.out_features
    dim = slot.in_shape[-1]
    with torch.no_grad():
        block.mlp.fc2.weight[:, hidden // 2 :] = 0  # the upper half of the hidden units is dead
        block.mlp.fc1.weight[: hidden // 2] *= 1e-3  # and the live half has the smallest fc1 rows
    x = torch.randn(4, *slot.in_shape, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        target = block(x)
    ratio = hidden / 2 / dim
    spec = CandidateSpec("mlp_ratio", {"ratio": ratio, "importance": "taylor"}, SlotSignature.of(slot))
    module = build_candidate(spec, block)
    assert module.block.mlp.fc1.out_features == hidden // 2
    module.init_from_batch(x, target)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(x), target, rtol=1e-4, atol=1e-5)
    # attention removed: with a dead attention branch the MLP-only block is exact
    with torch.no_grad():
        block.attn.proj.weight.zero_()
        block.attn.proj.bias.zero_()
        target = block(x)
    full = CandidateSpec("mlp_only", {"ratio": hidden / dim}, SlotSignature.of(slot))
    mlp_only = build_candidate(full, block).eval()
    assert not any("attn" in name for name, _ in mlp_only.named_modules())
    with torch.no_grad():
        torch.testing.assert_close(mlp_only(x), target, rtol=1e-5, atol=1e-6)


def test_slim_vit_cuts_heads_and_mlp_together_and_taylor_keeps_the_live_ones():
    slot, block = _vit_block()
    dim, hd, hidden = block.attn.proj.in_features, block.attn.head_dim, block.mlp.fc1.out_features
    with torch.no_grad():
        block.attn.proj.weight[:, :hd] = 0  # head 0 is dead
        block.mlp.fc2.weight[:, : hidden // 2] = 0  # and so is the lower half of the MLP
    x = torch.randn(4, *slot.in_shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        target = block(x)
    spec = CandidateSpec("slim_vit", {"heads": 1, "ratio": hidden / 2 / dim, "importance": "taylor"},
                         SlotSignature.of(slot))
    module = build_candidate(spec, block)
    assert module.block.attn.num_heads == 1 and module.block.mlp.fc1.out_features == hidden // 2
    module.init_from_batch(x, target)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(x), target, rtol=1e-4, atol=1e-5)


def test_vit_pruning_families_do_not_offer_the_same_block_twice():
    slot, block = _vit_block()
    specs = slot_candidates(slot, block, {name: {"importance": "l1"} for name in ("mlp_ratio", "fewer_heads", "slim_vit")})
    shapes = [
        (m.attn.num_heads, m.mlp.fc1.out_features)
        for m in (build_candidate(s, block) for s in specs)
    ]
    assert len(shapes) == len(set(shapes)) > 3
    assert (block.attn.num_heads, block.mlp.fc1.out_features) == shapes[0]  # only keep is the teacher's size


# --- low rank ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(6, 10, 3, stride=2, padding=1),
        nn.Conv2d(12, 5, 1, bias=False),
        nn.Conv2d(4, 8, 5, padding=4, dilation=2),
        nn.Linear(7, 9),
    ],
    ids=["3x3-stride2", "1x1", "dilated", "linear"],
)
def test_svd_at_full_rank_reproduces_the_layer(layer):
    torch.manual_seed(0)
    rank = min(layer.weight.shape[0], layer.weight[0].numel())
    pair = factorize(layer, rank)
    x = torch.randn(2, 7) if isinstance(layer, nn.Linear) else torch.randn(2, layer.in_channels, 11, 11)
    with torch.no_grad():
        torch.testing.assert_close(pair(x), layer(x), rtol=1e-4, atol=1e-5)
    assert pair[0].weight.shape[0] == rank
    # a lower rank gives the best approximation of that rank: error shrinks as rank grows
    errs = [(factorize(layer, r)(x) - layer(x)).norm().item() for r in (1, max(1, rank // 2), rank)]
    assert errs[0] >= errs[1] >= errs[2]


def test_svd_keeps_same_padding_variants_exact():
    from timm.layers import Conv2dSame

    conv = Conv2dSame(4, 6, 3, stride=2)
    pair = factorize(conv, 6)
    assert type(pair[0]) is Conv2dSame
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(pair(x), conv(x), rtol=1e-4, atol=1e-5)


def test_lowrank_family_factorises_the_teacher_block():
    model = _model("test_resnet")
    slot = _slots(model)[-1]
    block = get_submodule(model, slot.path)
    specs = slot_candidates(slot, block, {"lowrank": {}})[1:]
    assert specs and all(s.family == "lowrank" for s in specs)
    module = build_candidate(specs[0], block)
    factorised = [n for n, m in module.named_modules() if isinstance(m, nn.Sequential) and len(m) == 2]
    assert factorised, "at least one layer is replaced by a rank-r pair"
    assert type(module) is type(block)
    # the teacher block is untouched
    assert all(isinstance(m, nn.Conv2d) for n, m in block.named_modules() if n in factorised)
