"""A block holding a layer type a family does not know is skipped by that family with one warning,
never a traceback; the pruned family reads any block through Torch-Pruning's graph (timm's
mixed-kernel depthwise convolution included)."""
from __future__ import annotations

import logging

import timm
import torch

from hant.cli.main import main
from hant.ops_zoo import CandidateFamily, build_zoo, register_family
from hant.ops_zoo.check import check_zoo
from hant.slots import discover_slots


def _mixnet():
    model = timm.create_model("mixnet_s", num_classes=10).eval()
    return model, discover_slots(model, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))


def test_build_zoo_skips_what_a_family_cannot_read(caplog, isolated_registry):
    @register_family("reads_conv_pwl")
    class ReadsConvPwl(CandidateFamily):
        def applies_to(self, teacher_block):
            return teacher_block.conv_pwl.out_channels > 0  # AttributeError on blocks without one

        def candidates(self, slot, **options):
            return [{}]

        def build(self, spec, teacher_block=None):
            return torch.nn.Identity()

    model, slots = _mixnet()
    with caplog.at_level(logging.WARNING):
        zoo = build_zoo(model, slots, {"reads_conv_pwl": {}, "identity": {}})
    warnings = [r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()]
    assert len(warnings) == 1 and "'reads_conv_pwl'" in warnings[0] and "DepthwiseSeparableConv" in warnings[0]
    assert all(specs[0].family == "keep" for specs in zoo.values())
    assert [s.family for s in zoo["blocks.0.0"]] == ["keep", "identity"], "the other families still apply there"


def test_mixed_kernel_blocks_are_channel_pruned(caplog):
    model, slots = _mixnet()
    with caplog.at_level(logging.WARNING):
        zoo = build_zoo(model, slots, {"pruned": {"widths": [0.5]}})
    assert not [r for r in caplog.records if "cannot read" in r.getMessage()]
    assert "pruned" in {s.family for s in zoo["blocks.2.1"]}
    assert check_zoo(model, slots, zoo).ok


def test_zoo_check_on_a_mixed_kernel_model_reports_instead_of_crashing(capsys):
    code = main(["zoo", "mixnet_s", "--check", "--input-size", "32", "--families", "pruned,identity"])
    out, err = capsys.readouterr()
    assert code in (0, 1) and "Traceback" not in err
    assert "mixnet_s" in out


class _TwoOutputs(torch.nn.Module):
    """A block returning a tuple: it cannot be a slot."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.mean()


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU())
        self.b = _TwoOutputs()

    def forward(self, x):
        return self.b(self.a(x))[0]


def test_slot_discovery_skips_a_block_it_cannot_use_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        slots = discover_slots(_Net(), torch.randn(2, 4, 8, 8), ["a", "b"])
    assert [s.name for s in slots] == ["a"]
    assert [r.getMessage() for r in caplog.records if "_TwoOutputs" in r.getMessage()]
