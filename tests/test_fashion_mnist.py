"""Fashion-MNIST through the recipe: IDX files (raw and gzipped) read by torchvision, a seeded
stratified validation split, the t10k test split, resizing, 3 channels and class-balanced subsets."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import yaml

from hant.cli import main
from hant.config import recipe_from_dict
from hant.data import load_splits
from hant.errors import ConfigError, FileFormatError
from hant.fashion_mnist import DEFAULT_ROOT
from hant.io import read_json
from idx_files import IMAGE_MAGIC, LABEL_MAGIC, fake_fashion_mnist, write_idx

TRAIN, TEST = 120, 20


def image_ids(dataset) -> list[int]:
    """The index each stored image encodes in its first two pixels (see idx_files.images_for)."""
    return [int(img[0, 0]) + 256 * int(img[0, 1]) for img in dataset.images]


def splits_of(data: dict, seed: int = 0, model: str = "resnet18"):
    recipe = recipe_from_dict({"seed": seed, "data": {"dataset": "fashion_mnist", **data}, "teacher": {"model": model}})
    return load_splits(recipe.data, recipe.seed, recipe.teacher.model)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_splits_from_idx_files(tmp_path, gz):
    root = fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST, gz=gz)
    s = splits_of({"root": str(root), "image_size": 16})
    assert (len(s.train), len(s.val), len(s.test)) == (TRAIN - TRAIN // 12, TRAIN // 12, TEST)
    assert (s.num_classes, s.in_chans, s.image_size) == (10, 1, 16)
    x, y = s.train[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)
    assert s.train.images.dtype == torch.uint8, "images are stored as bytes and converted when read"
    train_ids, val_ids = set(image_ids(s.train)), set(image_ids(s.val))
    assert not train_ids & val_ids and train_ids | val_ids == set(range(TRAIN))
    assert image_ids(s.test) == list(range(TRAIN, TRAIN + TEST)), "test is the t10k file, in order"
    assert s.test.labels.tolist() == [i % 10 for i in range(TEST)]
    assert sorted(Counter(s.val.labels.tolist()).values()) == [1] * 10, "validation is stratified"


def test_split_is_seeded(tmp_path):
    root = str(fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST))
    a, b, c = (image_ids(splits_of({"root": root}, seed).val) for seed in (0, 0, 1))
    assert a == b and a != c


def test_three_channels_use_the_teachers_normalisation(tmp_path):
    """Grey copied into RGB and normalised with tf_efficientnet_lite0's pretrained mean and std
    (0.5, 0.5): byte v becomes v / 127.5 - 1 in every channel."""
    root = str(fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST))
    s = splits_of({"root": root, "image_size": 28, "channels": 3}, model="tf_efficientnet_lite0")
    x, _ = s.train[0]
    raw = s.train.images[0].double()
    assert s.in_chans == 3 and x.shape == (3, 28, 28)
    for channel in x:
        assert torch.allclose(channel.double(), raw / 127.5 - 1, atol=1e-6)


def test_one_channel_is_standardised_with_the_training_split(tmp_path):
    root = str(fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST))
    s = splits_of({"root": root, "image_size": 28})
    x = torch.stack([s.train[i][0] for i in range(len(s.train))])
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_train_subset_is_class_balanced(tmp_path):
    root = str(fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST))
    s = splits_of({"root": root, "train_subset": 50})
    assert len(s.train) == 50 and set(Counter(s.train.labels.tolist()).values()) == {5}
    assert not set(image_ids(s.train)) & set(image_ids(s.val))
    with pytest.raises(ConfigError, match="train_subset 5 is too small"):
        splits_of({"root": root, "train_subset": 5})


def test_fashion_only_options_are_refused_elsewhere():
    with pytest.raises(ConfigError, match="data.channels applies to dataset 'fashion_mnist' only"):
        recipe_from_dict({"data": {"dataset": "digits", "channels": 3}})
    with pytest.raises(ConfigError, match="data.channels"):
        recipe_from_dict({"data": {"dataset": "fashion_mnist", "channels": 2}})


def test_missing_files_are_one_line_naming_them(tmp_path, capsys):
    root = fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"dataset": "fashion_mnist", "root": str(root)}, "wandb": {"mode": "off"}}))
    for data in (root, tmp_path / "nowhere"):
        assert main(["run", str(recipe), "--dry-run", "--data", str(data)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert str(data) in err and "apt-get install dataset-fashion-mnist" in err
        assert "train-images-idx3-ubyte" in err and "t10k-labels-idx1-ubyte" in err


def test_a_file_of_another_format_is_a_file_format_error(tmp_path):
    root = fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST, gz=False)
    write_idx(root / "train-labels-idx1-ubyte", np.zeros((TRAIN, 2)), IMAGE_MAGIC)  # images where labels belong
    with pytest.raises(FileFormatError, match="train-labels-idx1-ubyte is not a uint8 IDX label"):
        splits_of({"root": str(root)})
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(TRAIN - 1), LABEL_MAGIC)
    with pytest.raises(FileFormatError, match="120 images but train-labels-idx1-ubyte 119 labels"):
        splits_of({"root": str(root)})


def test_teacher_stage_trains_on_fashion_mnist(tmp_path, capsys):
    """`hant teacher` on the tiny files: a 1-channel timm teacher trained for one epoch, its
    accuracy on the t10k split recorded."""
    root = fake_fashion_mnist(tmp_path / "fm", TRAIN, TEST)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"dataset": "fashion_mnist", "root": str(root), "image_size": 16, "batch_size": 32},
        "teacher": {"model": "resnet18", "kwargs": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1]},
                    "train": {"epochs": 1}},
        "wandb": {"mode": "off"},
    }))
    assert main(["teacher", str(tmp_path / "run"), "--recipe", str(recipe)]) == 0, capsys.readouterr().err
    meta = read_json(tmp_path / "run" / "teacher" / "meta.json")
    assert meta["source"] == "trained by this recipe" and meta["model"]["in_chans"] == 1
    assert 0 <= meta["test_accuracy"] <= 100


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_installed_dataset_is_the_default_root():
    s = splits_of({"image_size": 28})
    assert (len(s.train), len(s.val), len(s.test), s.num_classes) == (55_000, 5_000, 10_000, 10)
    assert set(Counter(s.val.labels.tolist()).values()) == {500}
