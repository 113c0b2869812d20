"""The student: assembling, saving and reloading it (here and in a fresh process), and checkpoint reading."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import hant
from hant.errors import ConfigError, HantError
from hant.io import read_json, write_json
from hant.models import create_model
from hant.weights import load_weights, read_checkpoint
from hant.ops_zoo import build_zoo, list_families, load_plugins, registry
from hant.slots import discover_slots
from hant.student import ARCH_FORMAT, assemble_student, load_student, save_student

MODEL = {
    "name": "resnet18",
    "num_classes": 10,
    "in_chans": 1,
    "kwargs": {"channels": [8, 16, 32, 64], "layers": [2, 1, 1, 1], "replace_stem_pool": True},
}
FAMILIES = {
    "identity": {},
    "pruned": {"widths": [0.5]},
    "conv_bn_act": {"kernels": [3]},
    "dwsep": {"kernels": [3]},
    "mbconv": {"kernels": [3], "expansions": [2], "se": [True], "acts": ["silu"]},
}
CHOICE_KEYS = {
    "layer1.0": "keep",
    "layer1.1": "identity",  # stride 1, shape kept
    "layer2.0": "mbconv[act=silu,e=2,k=3,se=1]",
    "layer3.0": "dwsep[act=relu,k=3]",
    "layer4.0": "pruned[divisor=8,importance=l1,width=0.5]",
}
PLUGIN_FAMILY = "student_user_pointwise"
PLUGIN_SOURCE = f'''
from torch import nn
from hant import CandidateFamily, register_family


@register_family("{PLUGIN_FAMILY}")
class UserPointwise(CandidateFamily):
    def candidates(self, slot, acts=("relu",)):
        return [{{"act": a}} for a in acts] if len(slot.in_shape) == 3 else []

    def build(self, spec, teacher_block=None):
        sig = spec.signature
        return nn.Sequential(
            nn.Conv2d(sig.in_shape[0], sig.out_shape[0], 1, stride=sig.stride, bias=False),
            nn.BatchNorm2d(sig.out_shape[0]),
            nn.ReLU(),
        )
'''

CHILD = """
import sys
import torch
import hant

torch.set_num_threads(1)
x = torch.load(sys.argv[1])
for student_dir, out in zip(sys.argv[2::2], sys.argv[3::2]):
    model = hant.load_student(student_dir, allow_plugins=True)
    assert not model.training
    with torch.no_grad():
        torch.save(model(x), out)
"""


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    return create_model(MODEL["name"], MODEL["num_classes"], MODEL["in_chans"], MODEL["kwargs"]).eval()


def _fixed_input() -> torch.Tensor:
    return torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(123))


def _setup(teacher, families=FAMILIES, keys=CHOICE_KEYS):
    slots = discover_slots(teacher, torch.zeros(1, 1, 32, 32))
    zoo = build_zoo(teacher, slots, families)
    choices = {}
    for slot in slots:
        by_key = {s.key: s for s in zoo[slot.name]}
        choices[slot.name] = by_key[keys[slot.name]]
    return slots, choices


def _train_a_little(model: nn.Module) -> nn.Module:
    """Move every weight and BatchNorm statistic away from its initial value, then switch to eval."""
    g = torch.Generator().manual_seed(5)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        model(torch.randn(4, 1, 32, 32, generator=g))
    return model.eval()


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)




# --- assembling ----------------------------------------------------------------------------------


def test_assembled_student_replaces_the_chosen_slots():
    teacher = _teacher()
    slots, choices = _setup(teacher)
    student = assemble_student(teacher, slots, choices).eval()
    assert _logits(student, _fixed_input()).shape == (2, 10)
    assert isinstance(student.layer1[1], nn.Identity)
    assert student.layer1[0] is not teacher.layer1[0]  # a copy, even where kept
    assert type(student.layer1[0]) is type(teacher.layer1[0])
    assert student.layer4[0].conv1.out_channels == 32 and student.layer4[0].conv2.out_channels == 64
    assert any(isinstance(m, nn.SiLU) for m in student.layer2[0].modules())
    assert student.layer3[0].body[0][0].groups == 16  # depthwise over layer3.0's 16 input channels
    # the teacher itself is unchanged
    assert type(teacher.layer1[1]).__name__ == "BasicBlock"
    assert teacher.layer4[0].conv1.out_channels == 64
    assert sum(p.numel() for p in student.parameters()) != sum(p.numel() for p in teacher.parameters())


def test_all_keep_student_equals_the_teacher():
    teacher = _teacher()
    slots, choices = _setup(teacher, keys={name: "keep" for name in CHOICE_KEYS})
    student = assemble_student(teacher, slots, choices).eval()
    x = _fixed_input()
    assert torch.equal(_logits(student, x), _logits(teacher, x))


def test_trained_candidate_modules_are_used_as_given():
    teacher = _teacher()
    slots, choices = _setup(teacher)
    trained = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
    student = assemble_student(teacher, slots, choices, candidate_modules={"layer2.0": trained})
    assert student.layer2[0] is trained
    assert _logits(student.eval(), _fixed_input()).shape == (2, 10)


# --- saving and loading --------------------------------------------------------------------------


def _saved_student(path, teacher=None, plugins=None, families=FAMILIES, keys=CHOICE_KEYS):
    teacher = teacher if teacher is not None else _teacher()
    slots, choices = _setup(teacher, families, keys)
    student = _train_a_little(assemble_student(teacher, slots, choices))
    save_student(student, path, MODEL, slots, choices, plugins=plugins, metadata={"note": "test"})
    return student, slots, choices


def test_save_writes_arch_and_weights(tmp_path):
    _saved_student(tmp_path / "s")
    arch = read_json(tmp_path / "s" / "arch.json")
    assert arch["format"] == ARCH_FORMAT
    assert arch["model"] == MODEL
    assert [r["slot"] for r in arch["replacements"]] == ["layer1.1", "layer2.0", "layer3.0", "layer4.0"]
    assert [r["spec"]["key"] for r in arch["replacements"]] == [CHOICE_KEYS[r["slot"]] for r in arch["replacements"]]
    assert arch["metadata"] == {"note": "test"} and arch["plugins"] == []
    assert (tmp_path / "s" / "weights.safetensors").stat().st_size > 0


def test_reload_in_the_same_process_gives_identical_logits(tmp_path):
    student, _, _ = _saved_student(tmp_path / "s")
    x = _fixed_input()
    expected = _logits(student, x)
    loaded = load_student(tmp_path / "s")
    assert not loaded.training and not any(m.training for m in loaded.modules())
    assert isinstance(loaded.layer1[1], nn.Identity)
    assert loaded.layer4[0].conv1.out_channels == 32
    assert repr(loaded) == repr(student)
    torch.testing.assert_close(_logits(loaded, x), expected, rtol=0, atol=0)
    # BatchNorm statistics were restored too (not just parameters)
    assert torch.equal(loaded.layer2[0].body[0][1].running_mean, student.layer2[0].body[0][1].running_mean)


def _plugin_student(path, plugin_path):
    families = {PLUGIN_FAMILY: {}, "pruned": {"widths": [0.5]}}
    keys = dict.fromkeys(CHOICE_KEYS, "keep")
    keys["layer2.0"] = f"{PLUGIN_FAMILY}[act=relu]"
    keys["layer3.0"] = "pruned[divisor=8,importance=l1,width=0.5]"
    return _saved_student(path, plugins=[str(plugin_path)], families=families, keys=keys)[0]


@pytest.fixture(scope="module")
def fresh_process_logits(tmp_path_factory):
    """Parent and fresh-process logits of a plain student and of one using a user plugin family."""
    root = tmp_path_factory.mktemp("fresh")
    x = _fixed_input()
    torch.save(x, root / "x.pt")
    plain = _saved_student(root / "plain")[0]
    plugin_path = root / "student_plugin.py"
    plugin_path.write_text(textwrap.dedent(PLUGIN_SOURCE))
    with pytest.MonkeyPatch.context() as mp:
        list_families()
        mp.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
        before = set(sys.modules)
        load_plugins([str(plugin_path)])
        with_plugin = _plugin_student(root / "plugin", plugin_path)
        for name in set(sys.modules) - before:
            if name.startswith("hant_plugin_"):
                del sys.modules[name]
    parent = {"plain": _logits(plain, x), "plugin": _logits(with_plugin, x)}
    (root / "child.py").write_text(CHILD)
    args = [str(root / "x.pt")]
    for name in parent:
        args += [str(root / name), str(root / f"{name}_logits.pt")]
    # the child must import this same hant, wherever the tests run from
    hant_root = str(Path(hant.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [hant_root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, str(root / "child.py"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = {name: torch.load(root / f"{name}_logits.pt") for name in parent}
    return parent, child


def test_reload_in_a_fresh_process_gives_the_same_logits(fresh_process_logits):
    parent, child = fresh_process_logits
    assert child["plain"].shape == (2, 10)
    torch.testing.assert_close(child["plain"], parent["plain"], rtol=0, atol=1e-5)


def test_reload_with_a_plugin_family_in_a_fresh_process(fresh_process_logits):
    parent, child = fresh_process_logits
    torch.testing.assert_close(child["plugin"], parent["plugin"], rtol=0, atol=1e-5)
    assert not torch.allclose(parent["plugin"], parent["plain"])


def test_reload_with_a_plugin_family_in_the_same_process(tmp_path, isolated_registry):
    """The pipeline's Context loads the recipe's plugins, then the report stage calls load_student,
    which loads the same plugin files again."""
    plugin_path = tmp_path / "student_plugin_same.py"
    plugin_path.write_text(textwrap.dedent(PLUGIN_SOURCE))
    load_plugins([str(plugin_path)])
    student = _plugin_student(tmp_path / "s", plugin_path)
    loaded = load_student(tmp_path / "s", allow_plugins=True)
    x = _fixed_input()
    torch.testing.assert_close(_logits(loaded, x), _logits(student, x), rtol=0, atol=0)


def test_loading_a_directory_without_arch_json_fails(tmp_path):
    with pytest.raises(HantError, match="arch.json"):
        load_student(tmp_path)
    _saved_student(tmp_path / "s")
    (tmp_path / "s" / "arch.json").unlink()
    with pytest.raises(HantError, match="arch.json"):
        load_student(tmp_path / "s")


def test_loading_another_format_fails(tmp_path):
    _saved_student(tmp_path / "s")
    arch = read_json(tmp_path / "s" / "arch.json")
    arch["format"] = "hant-student/99"
    write_json(tmp_path / "s" / "arch.json", arch)
    with pytest.raises(HantError, match="hant-student/99"):
        load_student(tmp_path / "s")


def test_weights_that_do_not_fit_the_arch_fail(tmp_path):
    _saved_student(tmp_path / "s")
    arch = read_json(tmp_path / "s" / "arch.json")
    arch["replacements"] = [r for r in arch["replacements"] if r["slot"] != "layer1.1"]  # identity forgotten
    write_json(tmp_path / "s" / "arch.json", arch)
    with pytest.raises(HantError, match="missing"):
        load_student(tmp_path / "s")


# --- checkpoints ---------------------------------------------------------------------------------


def _small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))


def _state() -> dict:
    torch.manual_seed(3)
    return {k: v.clone() for k, v in _small().state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_read_safetensors(tmp_path):
    state = _state()
    save_file(state, str(tmp_path / "w.safetensors"))
    _assert_same(read_checkpoint(tmp_path / "w.safetensors"), state)


def test_read_plain_torch_file(tmp_path):
    state = _state()
    torch.save(state, tmp_path / "w.pt")
    _assert_same(read_checkpoint(str(tmp_path / "w.pt")), state)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "state_dict_ema", "model_ema"])
def test_nested_state_dicts_are_unwrapped(tmp_path, wrapper):
    state = _state()
    torch.save({wrapper: state, "epoch": 7, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pth")
    _assert_same(read_checkpoint(tmp_path / "ckpt.pth"), state)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_module_prefixes_are_stripped(tmp_path, prefix):
    """DDP's and torch.compile's wrapper prefixes go (timm's clean_state_dict); inner names stay."""
    state = _state()
    torch.save({"state_dict": {f"{prefix}{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    loaded = read_checkpoint(tmp_path / "ddp.pth")
    _assert_same(loaded, state)
    torch.save({"backbone.module.w": torch.ones(1)}, tmp_path / "inner.pth")
    assert list(read_checkpoint(tmp_path / "inner.pth")) == ["backbone.module.w"]


class _Payload:
    """Unpickling this would run code (create a directory)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_torch_files_are_loaded_weights_only(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"state_dict": _state(), "extra": _Payload(str(marker))}, tmp_path / "unsafe.pth")
    with pytest.raises(ConfigError, match="safetensors"):
        read_checkpoint(tmp_path / "unsafe.pth")
    assert not marker.exists(), "a checkpoint must never run code on load"


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ConfigError, match="absent.pth"):
        read_checkpoint(tmp_path / "absent.pth")
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(ConfigError, match="no state_dict"):
        read_checkpoint(tmp_path / "tensor.pt")


def test_load_weights_into_a_model(tmp_path):
    state = _state()
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.manual_seed(99)
    model = _small()
    assert not torch.equal(model[0].weight, state["0.weight"])
    load_weights(model, tmp_path / "w.safetensors")
    _assert_same(model.state_dict(), state)


def test_load_weights_with_mismatched_keys_raises(tmp_path):
    state = _state()
    state["extra.weight"] = torch.zeros(1)
    del state["3.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ConfigError) as e:
        load_weights(_small(), tmp_path / "w.pt")
    msg = str(e.value)
    assert "1 missing" in msg and "3.bias" in msg
    assert "1 unexpected" in msg and "extra.weight" in msg


def test_load_weights_with_mismatched_shapes_raises_config_error(tmp_path):
    """A checkpoint trained for another number of classes has the right keys but wrong shapes."""
    state = _state()
    state["3.weight"] = torch.zeros(5, 8)
    state["3.bias"] = torch.zeros(5)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(ConfigError, match="w.safetensors"):
        load_weights(_small(), tmp_path / "w.safetensors")


def test_create_model_errors():
    with pytest.raises(ConfigError, match="resnet_nonexistent"):
        create_model("resnet_nonexistent", 10, 3)
    with pytest.raises(ConfigError, match="no_such_kwarg"):
        create_model("resnet18", 10, 3, {"no_such_kwarg": 1})


def test_public_api_exports_load_student():
    assert hant.load_student is load_student
