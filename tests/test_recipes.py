"""Every shipped recipe passes `hant run RECIPE --dry-run` (on a tiny ImageFolder or tiny
Fashion-MNIST files made here)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from hant.cli import main
from idx_files import fake_fashion_mnist

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagefolder")
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (12, 12), (i * 60, 30, 90)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def fashion_files(tmp_path_factory) -> Path:
    return fake_fashion_mnist(tmp_path_factory.mktemp("fashion_mnist"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_dry_run(recipe, image_folder, fashion_files, capsys):
    args = ["run", str(recipe), "--dry-run"]
    if "dataset: imagefolder" in recipe.read_text():
        args += ["--data", str(image_folder)]
    if "dataset: fashion_mnist" in recipe.read_text():
        args += ["--data", str(fashion_files)]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "dry run OK" in out
    assert " 0 candidates" not in out


def test_dry_run_with_a_missing_data_path_is_a_clear_error(tmp_path, capsys):
    recipe = next(r for r in RECIPES if "imagefolder" in r.read_text())
    assert main(["run", str(recipe), "--dry-run", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "train/" in err and "Traceback" not in err


def test_unknown_named_target_is_a_clear_error(capsys):
    recipe = next(r for r in RECIPES if "targets:" in r.read_text())
    assert main(["run", str(recipe), "--dry-run", "--target", "tpu"]) == 2
    assert "no target named 'tpu'" in capsys.readouterr().err
