"""ImageFolder data through timm's loader factory: transforms, preprocessing, seeded order, training."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import tiny_recipe

from hant.config import recipe_from_dict
from hant.distill.trainer import _set_epoch
from hant.io import read_json
from hant.loaders import preprocessing
from hant.pipeline import Context, RunDir, run_stages


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Two classes told apart by colour: red-ish and blue-ish noise images of 20x20 pixels."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 8)):
        for c, cls in enumerate(("red", "blue")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (20, 20, 3))
                pixels[..., 0 if c == 0 else 2] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def _context(root: Path, run: Path, **data) -> Context:
    recipe = tiny_recipe(data={"dataset": "imagefolder", "root": str(root), "image_size": 16, "batch_size": 8, **data})
    return Context(recipe_from_dict(recipe), RunDir(run))


def test_train_and_eval_loaders_come_from_timm_with_the_teachers_preprocessing(image_folder, tmp_path):
    ctx = _context(image_folder, tmp_path)
    train, val = ctx.train_loader(), ctx.eval_loader("val")
    names = [type(t).__name__ for t in train.dataset.transform.transforms]
    assert "RandomResizedCropAndInterpolation" in names and "RandomHorizontalFlip" in names
    assert not any("Random" in type(t).__name__ for t in val.dataset.transform.transforms)
    x, y = next(iter(val))
    assert x.shape == (16, 3, 16, 16) and x.dtype == torch.float32 and y.shape == (16,)
    assert x.min() < 0 < x.max(), "inputs are normalised with the teacher's mean and std"
    assert len(val) == 1 and len(train) == 6  # 48 training images in batches of 8


def test_preprocessing_follows_the_models_pretrained_config():
    assert preprocessing("inception_v3")["mean"] == (0.5, 0.5, 0.5)
    assert preprocessing("resnet18")["mean"] == (0.485, 0.456, 0.406)
    assert preprocessing("no_such_model") == {}


def test_training_order_is_a_function_of_seed_and_epoch(image_folder, tmp_path):
    ctx = _context(image_folder, tmp_path, augment=False)

    def labels(epoch: int) -> list[int]:
        loader = ctx.train_loader()
        _set_epoch(loader, 7, epoch)
        return [int(v) for _, y in loader for v in y]

    assert labels(0) == labels(0)
    assert labels(0) != labels(1)


def test_a_teacher_trains_on_an_image_folder(image_folder, tmp_path):
    recipe = tiny_recipe(
        data={"dataset": "imagefolder", "root": str(image_folder), "image_size": 16, "batch_size": 8},
        teacher={"train": {"epochs": 4, "lr": 0.05}},
    )
    run_stages(Context(recipe_from_dict(recipe), RunDir(tmp_path)), "teacher")
    meta = read_json(RunDir(tmp_path).teacher_meta)
    assert meta["val_accuracy"] >= 75, "red against blue should be learnt in a few epochs"
    assert "test_accuracy" not in meta, "without test/ no accuracy is called test: val chose the best epoch"


def test_a_test_split_is_called_test_only_where_the_folder_has_one(image_folder, tmp_path):
    assert _context(image_folder, tmp_path / "a").splits.test_split == "val"
    with_test = tmp_path / "with_test"
    shutil.copytree(image_folder, with_test)
    shutil.copytree(image_folder / "val", with_test / "test")
    splits = _context(with_test, tmp_path / "b").splits
    assert splits.test_split == "test" and splits.test is not splits.val
