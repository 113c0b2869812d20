"""Phase 1 on a tiny teacher: candidates learn, finished ones are not retrained, NaN is contained."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hant.config import DistillConfig
from hant.distill import layerwise
from hant.distill.layerwise import distill_zoo
from hant.ops_zoo import CandidateFamily, build_zoo, register_family
from hant.slots import discover_slots


def _loaders(n: int = 192):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 32, 32, generator=g)
    data = TensorDataset(x, torch.zeros(n, dtype=torch.long))
    return DataLoader(data, batch_size=32, shuffle=True, generator=g), DataLoader(data, batch_size=48)


@register_family("test_nan")
class _NaNFamily(CandidateFamily):
    """A candidate whose output is NaN: it must fail alone."""

    def candidates(self, slot):
        return [{}]

    def build(self, spec, teacher_block=None):
        sig = spec.signature

        class NaNOut(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(sig.in_shape[0], sig.out_shape[0], 1, sig.stride)

            def forward(self, x):
                return self.conv(x) * float("nan")

        return NaNOut()


def test_distillation_beats_untrained_and_resumes_without_retraining(tiny_resnet, tmp_path, monkeypatch):
    slots = discover_slots(tiny_resnet, torch.randn(2, 1, 32, 32))[:2]
    zoo = build_zoo(tiny_resnet, slots, {"conv_bn_act": {"kernels": [3]}, "identity": {}, "test_nan": {}})
    train, val = _loaders()
    cfg = DistillConfig(epochs=4, lr=5e-3)
    untrained = distill_zoo(tiny_resnet, slots, zoo, train, val, DistillConfig(epochs=0), tmp_path / "untrained")
    trained = distill_zoo(tiny_resnet, slots, zoo, train, val, cfg, tmp_path / "w")
    for slot in slots:
        key = "conv_bn_act[k=3]"
        assert trained[slot.name][key].status == "ok"
        assert trained[slot.name][key].score < 0.7 * untrained[slot.name][key].score
        assert trained[slot.name]["keep"].score == 0.0
    for slot in slots:
        assert trained[slot.name]["test_nan"].status == "failed"
        assert "nan" in trained[slot.name]["test_nan"].error

    calls = []
    real = layerwise._train_chunk
    monkeypatch.setattr(layerwise, "_train_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = distill_zoo(tiny_resnet, slots, zoo, train, val, cfg, tmp_path / "w")
    assert calls == []
    for slot in slots:
        for key, rec in trained[slot.name].items():
            assert again[slot.name][key].score == rec.score


def test_teacher_is_left_untouched(tiny_resnet, tmp_path):
    before = {k: v.clone() for k, v in tiny_resnet.state_dict().items()}
    slots = discover_slots(tiny_resnet, torch.randn(2, 1, 32, 32))[:1]
    zoo = build_zoo(tiny_resnet, slots, {"pruned": {"widths": [0.5]}})
    train, val = _loaders(64)
    distill_zoo(tiny_resnet, slots, zoo, train, val, DistillConfig(epochs=1), tmp_path)
    after = tiny_resnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in tiny_resnet.parameters())
