"""Mixed-precision training settings: the recipe's ``amp`` values, and bfloat16 autocast on the CPU
in phase 1 and in end-to-end training."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hant.amp import amp_mode, autocast_dtype, isa_features
from hant.config import DistillConfig, TrainConfig, recipe_from_dict
from hant.distill.layerwise import distill_zoo
from hant.distill.trainer import train_classifier
from hant.errors import ConfigError
from hant.ops_zoo import build_zoo
from hant.slots import discover_slots

CPU = torch.device("cpu")


@pytest.mark.parametrize("value, mode",
                         [(True, "gpu"), (False, "off"), ("gpu", "gpu"), ("bf16", "bf16"), ("off", "off")])
def test_recipe_amp_takes_booleans_and_modes(value, mode):
    sections = {"distill": {"amp": value}, "finetune": {"amp": value}, "teacher": {"train": {"amp": value}}}
    recipe = recipe_from_dict(sections)
    assert [amp_mode(c.amp) for c in (recipe.distill, recipe.finetune, recipe.teacher.train)] == [mode] * 3


@pytest.mark.parametrize("path", ["distill.amp", "finetune.amp", "teacher.train.amp"])
@pytest.mark.parametrize("value", ["fp8", "BF16", 1, None])
def test_a_bad_amp_value_names_its_key_and_the_choices(path, value):
    data: dict = {}
    *sections, key = path.split(".")
    node = data
    for s in sections:
        node = node.setdefault(s, {})
    node[key] = value
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(data)
    message = str(e.value)
    assert repr(path) in message and "'bf16'" in message and "\n" not in message


def test_cpu_autocast_only_when_asked_for_bf16():
    assert autocast_dtype(CPU, True, float16=True) is None
    assert autocast_dtype(CPU, "gpu", float16=True) is None
    assert autocast_dtype(CPU, "off", float16=True) is None
    assert autocast_dtype(CPU, "bf16", float16=False) is torch.bfloat16
    with pytest.raises(ConfigError, match="amp"):
        autocast_dtype(CPU, "half", float16=True)


def test_isa_features_name_the_flags_and_torch_dispatch_level():
    features = isa_features()
    assert isinstance(features.pop("torch_cpu_capability"), str)
    assert features and all(isinstance(v, bool) for v in features.values())


def _teacher() -> nn.Module:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=(1, 1, 1, 1),
                              replace_stem_pool=True)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():  # timm zeroes each block's last BatchNorm scale: undo it, or blocks are identities
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def _loaders(n: int = 128):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    train = DataLoader(TensorDataset(x[:96], y[:96]), batch_size=32, shuffle=True, generator=g)
    return train, DataLoader(TensorDataset(x[96:], y[96:]), batch_size=32)


def _autocast_seen(module: nn.Module) -> list[bool]:
    """Records, at every forward of ``module``, whether CPU bfloat16 autocast is on."""
    seen: list[bool] = []
    module.register_forward_hook(
        lambda *_: seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16))
    return seen


def test_phase1_trains_and_scores_candidates_under_cpu_bf16(tmp_path):
    teacher = _teacher()
    slots = discover_slots(teacher, torch.randn(2, 1, 32, 32))[1:3]
    zoo = build_zoo(teacher, slots, {"pruned": {"widths": [0.5]}, "conv_bn_act": {"kernels": [1, 3]}})
    train, val = _loaders()
    seen = _autocast_seen(teacher)
    fp32 = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2, lr=5e-3, amp="off"), tmp_path / "fp32")
    assert seen and not any(seen)
    seen.clear()
    bf16 = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2, lr=5e-3, amp="bf16"), tmp_path / "bf16")
    assert any(seen), "phase 1 never ran the teacher under bfloat16 autocast"
    trained = 0
    for slot in slots:
        for key, rec in bf16[slot.name].items():
            ref = fp32[slot.name][key]
            assert rec.status == ref.status != "failed"
            assert math.isfinite(rec.score) and math.isfinite(rec.feature_loss)
            if rec.status == "ok" and rec.train_loss is not None:
                trained += 1
                assert rec.train_loss != ref.train_loss  # bfloat16 numerics, not float32 under another name
                assert rec.feature_loss == pytest.approx(ref.feature_loss, rel=0.25)
    assert trained >= 4


def test_training_runs_under_cpu_bf16_autocast_and_learns():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    seen = _autocast_seen(model)
    result = train_classifier(model, loader, DataLoader(TensorDataset(x, y), 128),
                              TrainConfig(epochs=6, lr=0.1, warmup_epochs=0, amp="bf16"))
    assert any(seen), "training never ran under bfloat16 autocast"
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert result.best_val_accuracy >= 90.0
    assert next(model.parameters()).dtype is torch.float32  # autocast: the weights stay float32
