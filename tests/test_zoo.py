"""The op zoo: candidate lists per slot, building candidates, specs, pruning, and the family registry."""
from __future__ import annotations

import json
import textwrap

import pytest
import timm
import torch
from torch import nn

from hant.errors import ZooError
from hant.ops_zoo import (
    CandidateFamily,
    CandidateSpec,
    SlotSignature,
    build_candidate,
    build_zoo,
    get_family,
    list_families,
    load_plugins,
    pruning,
    register_family,
    slot_candidates,
    zoo_from_json,
    zoo_to_json,
)
from hant.ops_zoo.pruning import prune_plans, pruned_width, register_prune_plan
from hant.pruning.block import prune_block
from hant.slots import discover_slots, get_submodule

BUILTIN = {"keep", "identity", "pruned", "conv_bn_act", "dwsep", "mbconv"}

# small but varied options, so that building every candidate stays fast
FAMILIES = {
    "identity": {},
    "pruned": {"widths": [0.25, 0.5, 0.75]},
    "conv_bn_act": {},
    "dwsep": {"kernels": [3, 5], "acts": ["relu", "silu"]},
    "mbconv": {"kernels": [3, 5], "expansions": [1, 4], "se": [False, True], "acts": ["relu", "hardswish"]},
}
# for forward passes: every structural variant once (activations do not change shapes)
SHAPE_FAMILIES = {
    "identity": {},
    "pruned": {"widths": [0.25, 0.5, 0.75]},
    "conv_bn_act": {},
    "dwsep": {"kernels": [3, 5, 7]},
    "mbconv": {"kernels": [3, 7], "expansions": [1, 4], "se": [False, True], "acts": ["hardswish"]},
}
ALL_DEFAULTS = {"identity": {}, "pruned": {}, "conv_bn_act": {}, "dwsep": {}, "mbconv": {}}

PLUGIN_SOURCE = '''
from torch import nn
from hant import CandidateFamily, register_family


@register_family("{name}")
class UserPointwise(CandidateFamily):
    """One strided 1x1 convolution."""

    def candidates(self, slot, biases=(False,)):
        if len(slot.in_shape) != 3:
            return []
        return [{{"bias": bool(b)}} for b in biases]

    def build(self, spec, teacher_block=None):
        sig = spec.signature
        return nn.Conv2d(sig.in_shape[0], sig.out_shape[0], 1, stride=sig.stride, bias=spec.params["bias"])
'''


def _resnet(layers=(1, 1, 1, 1)) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "resnet18", num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=layers, replace_stem_pool=True
    ).eval()


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(2))


@pytest.fixture()
def resnet_with_identity():
    """tiny_resnet with a second block in layer1: ``layer1.1`` keeps its shape (8, 8, 8)."""
    return _resnet((2, 1, 1, 1))




@pytest.fixture(scope="module")
def effnet():
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", num_classes=10).eval()
    return model, discover_slots(model, _x(1, 3, 32, 32))


def _zoo(model, families=FAMILIES, size=32):
    slots = discover_slots(model, _x(1, 1, size, size))
    return slots, build_zoo(model, slots, families)


# --- candidate lists -----------------------------------------------------------------------------


def test_keep_is_candidate_zero_of_every_slot(tiny_resnet):
    slots, zoo = _zoo(tiny_resnet, ALL_DEFAULTS)
    assert list(zoo) == [s.name for s in slots]
    for specs in zoo.values():
        assert specs[0].family == "keep" and specs[0].key == "keep" and specs[0].params == {}
        assert [s.family for s in specs].count("keep") == 1
        assert len(specs) > 1


def test_naming_keep_in_the_families_adds_no_second_keep(tiny_resnet):
    _, zoo = _zoo(tiny_resnet, {"keep": {}, "conv_bn_act": {"kernels": [3]}})
    for specs in zoo.values():
        assert [s.key for s in specs] == ["keep", "conv_bn_act[k=3]"]


def test_default_candidate_counts(tiny_resnet):
    capped_families = ("conv_bn_act", "dwsep", "mbconv")
    uncapped = {name: ({"max_cost": None} if name in capped_families else {}) for name in ALL_DEFAULTS}
    _, zoo = _zoo(tiny_resnet, uncapped)
    # inner widths 8/16/32/64 at the 7 default fractions, rounded to multiples of 8: only
    # distinct channel counts below the teacher's remain (8 -> none; 16 -> 8; 32 -> 8, 16, 24; ...)
    expected_pruned = {"layer1.0": 0, "layer2.0": 1, "layer3.0": 3, "layer4.0": 7}
    for name, specs in zoo.items():
        per_family = {}
        for s in specs:
            per_family[s.family] = per_family.get(s.family, 0) + 1
        # no slot of tiny_resnet keeps its shape, so identity never fits
        expected = {"keep": 1, "pruned": expected_pruned[name], "conv_bn_act": 3, "dwsep": 3, "mbconv": 3 * 5 * 2 * 3}
        assert per_family == {k: v for k, v in expected.items() if v}
    # the default cost cap drops only what is estimated above 8x the slot's reference MACs: in
    # layer1.0 (64 -> 8 channels at 8x8) the MBConvs with expansion 6 and a 7x7 kernel
    _, capped = _zoo(tiny_resnet, ALL_DEFAULTS)
    dropped = {s.key for s in zoo["layer1.0"]} - {s.key for s in capped["layer1.0"]}
    assert dropped == {f"mbconv[act={a},e=6,k=7,se={se}]" for a in ("relu", "silu", "hardswish") for se in (0, 1)}
    assert all([s.key for s in capped[n]] == [s.key for s in zoo[n]] for n in ("layer2.0", "layer3.0", "layer4.0"))


def test_identity_only_where_shapes_are_equal(resnet_with_identity):
    slots, zoo = _zoo(resnet_with_identity, {"identity": {}})
    with_identity = {name for name, specs in zoo.items() if any(s.family == "identity" for s in specs)}
    assert with_identity == {s.name for s in slots if s.in_shape == s.out_shape} == {"layer1.1"}
    # layer1.0 is stride 1 but changes the channel count: no identity
    assert [s.key for s in zoo["layer1.0"]] == ["keep"]


def test_keys_are_unique_within_a_slot_and_readable(tiny_resnet):
    _, zoo = _zoo(tiny_resnet, ALL_DEFAULTS)
    for specs in zoo.values():
        keys = [s.key for s in specs]
        assert len(keys) == len(set(keys))
    keys = {s.key for s in zoo["layer2.0"]}
    assert "mbconv[act=relu,e=4,k=3,se=0]" in keys
    assert "mbconv[act=silu,e=6,k=7,se=1]" in keys
    assert "conv_bn_act[k=5]" in keys
    assert "dwsep[act=relu,k=7]" in keys
    assert "pruned[divisor=8,importance=l1,width=0.125]" in keys


def test_duplicate_options_collapse_to_one_candidate(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32))
    specs = slot_candidates(slots[1], tiny_resnet.layer2[0], {"conv_bn_act": {"kernels": [3, 3, 1, 3]}})
    assert [s.key for s in specs] == ["keep", "conv_bn_act[k=3]", "conv_bn_act[k=1]"]


def test_pruned_only_for_blocks_with_a_plan(effnet):
    model, slots = effnet
    zoo = build_zoo(model, slots, {"pruned": {"widths": [0.5]}})
    assert [s.family for s in zoo["blocks.0.0"]] == ["keep"]  # DepthwiseSeparableConv: no plan
    assert [s.family for s in zoo["blocks.1.0"]] == ["keep", "pruned"]  # InvertedResidual


def test_uids_cover_the_signature(tiny_resnet):
    _, zoo = _zoo(tiny_resnet, {"conv_bn_act": {"kernels": [3]}})
    uids = [s.uid for specs in zoo.values() for s in specs]
    assert len(uids) == len(set(uids)), "same key in slots with different signatures must give different uids"
    # same key, different slot -> different uid; same slot rebuilt -> same uid
    assert zoo["layer1.0"][1].key == zoo["layer2.0"][1].key
    assert zoo["layer1.0"][1].uid != zoo["layer2.0"][1].uid
    _, again = _zoo(tiny_resnet, {"conv_bn_act": {"kernels": [3]}})
    assert [s.uid for specs in again.values() for s in specs] == uids


def test_identical_signatures_share_uids():
    model = _resnet((1, 3, 1, 1))
    slots, zoo = _zoo(model, {"identity": {}})
    a, b = zoo["layer2.1"], zoo["layer2.2"]
    assert SlotSignature.of(slots[2]) == SlotSignature.of(slots[3])
    assert [s.uid for s in a] == [s.uid for s in b]


# --- CandidateSpec -------------------------------------------------------------------------------


def test_spec_dict_round_trip_preserves_key_and_uid(resnet_with_identity):
    _, zoo = _zoo(resnet_with_identity)
    for specs in zoo.values():
        for spec in specs:
            back = CandidateSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
            assert back == spec
            assert back.key == spec.key and back.uid == spec.uid
            assert isinstance(back.signature.in_shape, tuple)
    assert zoo_from_json(json.loads(json.dumps(zoo_to_json(zoo)))) == zoo


def test_spec_from_dict_rejects_a_key_that_does_not_match(tiny_resnet):
    _, zoo = _zoo(tiny_resnet, {"conv_bn_act": {"kernels": [3]}})
    d = zoo["layer2.0"][1].to_dict()
    d["params"]["k"] = 5
    with pytest.raises(ValueError, match=r"conv_bn_act\[k=3\]"):
        CandidateSpec.from_dict(d)
    del d["key"]  # without a key there is nothing to contradict
    assert CandidateSpec.from_dict(d).key == "conv_bn_act[k=5]"


def test_key_formats_values():
    sig = SlotSignature("conv_block", (8, 4, 4), (8, 4, 4), "x.Block", "abc")
    spec = CandidateSpec("fam", {"b": True, "a": 0.5, "c": "relu", "d": 3}, sig)
    assert spec.key == "fam[a=0.5,b=1,c=relu,d=3]"
    assert CandidateSpec("fam", {}, sig).key == "fam"
    other_sig = SlotSignature("conv_block", (8, 4, 4), (8, 4, 4), "x.Block", "abd")
    assert CandidateSpec("fam", {}, other_sig).uid != CandidateSpec("fam", {}, sig).uid


# --- building ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [(1, 1, 1, 1), (2, 1, 1, 1)], ids=["tiny_resnet", "with_identity"])
def test_every_candidate_maps_the_slot_shapes(layers):
    model = _resnet(layers)
    slots, zoo = _zoo(model, SHAPE_FAMILIES)
    families = set()
    for slot in slots:
        teacher_block = get_submodule(model, slot.path)
        x = torch.randn(1, *slot.in_shape)
        for spec in zoo[slot.name]:
            module = build_candidate(spec, teacher_block).eval()
            with torch.no_grad():
                y = module(x)
            assert tuple(y.shape) == (1, *slot.out_shape), spec.key
            if slot.out_nonnegative and spec.family != "identity":  # identity passes its input through
                assert (y >= 0).all(), f"{spec.key} must end in the slot's ReLU"
            families.add(spec.family)
    expected = BUILTIN if layers[0] == 2 else BUILTIN - {"identity"}
    assert families == expected


def test_keep_builds_a_copy_of_the_teacher_block(tiny_resnet):
    slots, zoo = _zoo(tiny_resnet, {})
    block = tiny_resnet.layer3[0]
    kept = build_candidate(zoo["layer3.0"][0], block)
    assert kept is not block
    x = torch.randn(2, *slots[2].in_shape)
    with torch.no_grad():
        assert torch.equal(kept(x), block(x))
    with torch.no_grad():
        kept.conv1.weight.zero_()
    assert block.conv1.weight.abs().sum() > 0, "the teacher must not share weights with its copy"


def test_teacher_derived_candidates_need_the_teacher_block(tiny_resnet):
    _, zoo = _zoo(tiny_resnet, {"pruned": {"widths": [0.5]}})
    for spec in zoo["layer2.0"][:2]:
        assert spec.family in ("keep", "pruned")
        with pytest.raises(ZooError, match="teacher"):
            build_candidate(spec)


def test_building_twice_gives_the_same_module(resnet_with_identity):
    model = resnet_with_identity
    slots, zoo = _zoo(model)
    for slot in slots:
        block = get_submodule(model, slot.path)
        for spec in zoo[slot.name]:
            torch.manual_seed(7)
            a = build_candidate(spec, block)
            torch.manual_seed(7)
            b = build_candidate(spec, block)
            assert repr(a) == repr(b), spec.key
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys()
            assert all(torch.equal(sa[k], sb[k]) for k in sa), spec.key
    # the seed matters for generated families (so the comparison above is not vacuous)
    spec = next(s for s in zoo["layer2.0"] if s.family == "mbconv")
    torch.manual_seed(7)
    a = build_candidate(spec)
    torch.manual_seed(8)
    b = build_candidate(spec)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_generated_candidates_respect_their_params(tiny_resnet):
    _, zoo = _zoo(tiny_resnet, {"mbconv": {"kernels": [5], "expansions": [4], "se": [True], "acts": ["silu"]}})
    spec = zoo["layer2.0"][1]
    module = build_candidate(spec)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    dw = [c for c in convs if c.groups > 1]
    assert len(dw) == 1 and dw[0].kernel_size == (5, 5) and dw[0].stride == (2, 2)
    assert dw[0].in_channels == 8 * 4  # layer2.0 input has 8 channels, expansion 4
    assert any(isinstance(m, nn.SiLU) for m in module.modules())
    assert any(isinstance(m, nn.Sigmoid) for m in module.modules())  # squeeze-excite gate


# --- pruning -------------------------------------------------------------------------------------


def _randomise_bn(bn: nn.BatchNorm2d, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)


def test_pruned_keeps_the_largest_l1_filters(tiny_resnet):
    _, zoo = _zoo(tiny_resnet, {"pruned": {"widths": [0.5]}})
    block = tiny_resnet.layer4[0]
    _randomise_bn(block.bn1, 3)
    teacher_w = block.conv1.weight.detach().clone()
    spec = zoo["layer4.0"][1]
    assert spec.key == "pruned[divisor=8,importance=l1,width=0.5]"
    pruned = build_candidate(spec, block)

    l1 = teacher_w.abs().flatten(1).sum(1)
    kept = torch.sort(torch.argsort(l1, descending=True)[:32]).values
    assert pruned.conv1.weight.shape == (32, 32, 3, 3)
    assert torch.equal(pruned.conv1.weight, teacher_w[kept])
    # every kept filter is at least as large as every dropped one
    dropped = torch.tensor([i for i in range(64) if i not in set(kept.tolist())])
    assert l1[kept].min() >= l1[dropped].max()
    # the coupled layers follow the same channels
    assert torch.equal(pruned.bn1.weight, block.bn1.weight[kept])
    assert torch.equal(pruned.bn1.running_mean, block.bn1.running_mean[kept])
    assert torch.equal(pruned.bn1.running_var, block.bn1.running_var[kept])
    assert torch.equal(pruned.conv2.weight, block.conv2.weight[:, kept])
    assert pruned.bn1.num_features == 32 and pruned.conv2.in_channels == 32
    # outer shape and the shortcut are untouched; the teacher is not modified
    assert pruned.conv2.out_channels == 64
    assert torch.equal(pruned.downsample[0].weight, block.downsample[0].weight)
    assert block.conv1.weight.shape == (64, 32, 3, 3)
    assert torch.equal(block.conv1.weight, teacher_w)


def test_pruning_dead_channels_is_exact(tiny_resnet):
    """If the channels pruning drops contribute nothing, the pruned block equals the teacher's."""
    block = tiny_resnet.layer4[0]
    _randomise_bn(block.bn1, 4)
    dead = torch.arange(1, 64, 2)  # odd channels: conv1 filters tiny, BN output zero
    with torch.no_grad():
        block.conv1.weight[dead] *= 1e-3
        block.bn1.weight[dead] = 0
        block.bn1.bias[dead] = 0
    pruned = prune_block(block, (32, 2, 2), 0.5, "l1", 8).eval()
    assert pruned.conv1.out_channels == 32
    assert torch.equal(pruned.conv1.weight, block.conv1.weight[0::2])
    x = torch.randn(3, 32, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), block(x), rtol=1e-5, atol=1e-5)


def test_pruned_inverted_residual_with_squeeze_excite(effnet):
    model, slots = effnet
    slot = next(s for s in slots if s.name == "blocks.2.1")
    block = get_submodule(model, slot.path)
    assert block.se is not None
    pruned = build_candidate(slot_candidates(slot, block, {"pruned": {"widths": [0.5]}})[1], block).eval()
    width = block.conv_pw.out_channels
    assert pruned.conv_dw.groups == pruned.conv_dw.in_channels == pruned.conv_pw.out_channels == width // 2
    with torch.no_grad():
        assert pruned(torch.randn(2, *slot.in_shape)).shape == (2, *slot.out_shape)


@pytest.mark.parametrize(
    "channels, width, divisor, expected",
    [
        (64, 0.5, 8, 32),
        (64, 0.3, 8, 16),  # 19.2 -> nearest multiple of 8
        (100, 0.5, 8, 48),  # 50 -> 48
        (64, 0.01, 8, 8),  # never below one divisor
        (8, 0.5, 8, 8),  # a group no wider than the divisor stays whole
        (4, 0.5, 8, 4),  # never above the channel count
        (15, 0.99, 8, 15),
        (64, 0.5, 1, 32),
        (10, 0.3, 1, 3),
    ],
)
def test_pruned_width(channels, width, divisor, expected):
    assert pruned_width(channels, width, divisor) == expected


def test_prune_block_errors(tiny_resnet):
    with pytest.raises(ZooError, match="Linear has no inner channel group"):
        prune_block(nn.Linear(3, 3), (3,), 0.5)
    with pytest.raises(ZooError, match="l7"):
        prune_block(tiny_resnet.layer2[0], (8, 8, 8), 0.5, importance="l7")


def test_a_users_block_is_pruned_without_a_plan():
    """Torch-Pruning's graph finds a block's inner groups whatever its class: nothing to register."""

    class UserBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 16, 1), nn.Conv2d(16, 4, 3, padding=1)

        def forward(self, x):
            return x + self.b(torch.relu(self.a(x)))

    block = UserBlock()
    pruned = prune_block(block, (4, 6, 6), 0.5, "l2", 8)
    assert pruned.a.out_channels == pruned.b.in_channels == 8 and pruned.b.out_channels == 4
    assert pruned(torch.randn(2, 4, 6, 6)).shape == (2, 4, 6, 6)


def test_user_prune_plan_does_not_hide_timm_plans(monkeypatch):
    """In a fresh process the plan registry starts empty; registering a plan for a user block first
    must not switch off the built-in plans of timm's (transformer) blocks."""
    monkeypatch.setattr(pruning, "_PLANS", {})  # the state of a freshly imported hant
    monkeypatch.setattr(pruning, "_timm_plans_registered", False)

    class UserBlock(nn.Module):
        pass

    @register_prune_plan(UserBlock)
    def _plan(block):
        return []

    vit = timm.create_model("test_vit", img_size=32, patch_size=8, num_classes=4)
    assert prune_plans(vit.blocks[0]), "the ViT block lost its pruning plans"


# --- options and the registry --------------------------------------------------------------------


def test_unknown_family_is_named(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32))
    with pytest.raises(ZooError, match="no_such_family") as e:
        build_zoo(tiny_resnet, slots, {"conv_bn_act": {}, "no_such_family": {}})
    assert "mbconv" in str(e.value)  # lists the registered ones
    with pytest.raises(ZooError, match="no_such_family"):
        get_family("no_such_family")


def test_unknown_family_option_is_named(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32))
    with pytest.raises(ZooError) as e:
        build_zoo(tiny_resnet, slots, {"mbconv": {"kernels": [3], "expansion": [2]}})
    msg = str(e.value)
    assert "mbconv" in msg and "expansion" in msg
    assert "expansions" in msg  # the valid options are listed


def test_bad_option_value_is_a_zoo_error(tiny_resnet):
    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32))
    with pytest.raises(ZooError, match="pruned"):
        build_zoo(tiny_resnet, slots, {"pruned": {"importance": "l7"}})


def test_builtin_families_are_listed():
    assert BUILTIN <= set(list_families())
    assert list_families() == sorted(list_families())
    assert get_family("keep").teacher_derived and not get_family("keep").trainable
    assert not get_family("identity").trainable
    assert get_family("mbconv").trainable and not get_family("mbconv").teacher_derived


def test_registering_another_class_under_a_taken_name_fails(isolated_registry):
    original = type(get_family("dwsep"))

    with pytest.raises(ZooError, match="dwsep"):

        @register_family("dwsep")
        class Impostor(CandidateFamily):
            def candidates(self, slot):
                return [{}]

            def build(self, spec, teacher_block=None):
                return nn.Identity()

    assert type(get_family("dwsep")) is original
    # the same class again is harmless
    register_family("dwsep")(original)
    assert type(get_family("dwsep")) is original


def test_register_family_needs_a_candidate_family(isolated_registry):
    with pytest.raises(TypeError):

        @register_family("not_a_family")
        class Plain:
            pass

    assert "not_a_family" not in list_families()


def test_plugin_file_registers_a_family(tmp_path, isolated_registry, tiny_resnet):
    path = tmp_path / "user_zoo_file.py"
    path.write_text(textwrap.dedent(PLUGIN_SOURCE.format(name="user_pointwise")))
    assert "user_pointwise" not in list_families()
    load_plugins([str(path)])
    assert "user_pointwise" in list_families()

    slots = discover_slots(tiny_resnet, _x(1, 1, 32, 32))
    zoo = build_zoo(tiny_resnet, slots, {"user_pointwise": {"biases": [False, True]}, "conv_bn_act": {"kernels": [1]}})
    for slot in slots:
        keys = [s.key for s in zoo[slot.name]]
        assert keys == ["keep", "user_pointwise[bias=0]", "user_pointwise[bias=1]", "conv_bn_act[k=1]"]
        module = build_candidate(zoo[slot.name][2])
        assert isinstance(module, nn.Conv2d) and module.bias is not None
        with torch.no_grad():
            assert module(torch.randn(2, *slot.in_shape)).shape == (2, *slot.out_shape)
    with pytest.raises(ZooError, match="kernels"):
        build_zoo(tiny_resnet, slots, {"user_pointwise": {"kernels": [3]}})


def test_plugin_module_by_import_name(tmp_path, monkeypatch, isolated_registry):
    (tmp_path / "user_zoo_module.py").write_text(textwrap.dedent(PLUGIN_SOURCE.format(name="user_pointwise_mod")))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins(["user_zoo_module"])
    assert "user_pointwise_mod" in list_families()


def test_missing_plugins_raise(tmp_path, isolated_registry):
    with pytest.raises(ZooError, match="nowhere.py"):
        load_plugins([str(tmp_path / "nowhere.py")])
    with pytest.raises(ZooError, match="no_such_plugin_module_xyz"):
        load_plugins(["no_such_plugin_module_xyz"])


def test_loading_the_same_plugin_file_twice_is_harmless(tmp_path, isolated_registry):
    """A recipe's plugins are loaded by the run's Context and again by load_student (report stage)."""
    path = tmp_path / "user_zoo_twice.py"
    path.write_text(textwrap.dedent(PLUGIN_SOURCE.format(name="user_pointwise_twice")))
    load_plugins([str(path)])
    load_plugins([str(path)])
    assert "user_pointwise_twice" in list_families()
