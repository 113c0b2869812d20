"""benchmarks/fashion_setup.py: the comparison's Fashion-MNIST set-up and its one-line errors."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import fashion_setup  # noqa: E402

from hant.config import load_recipe  # noqa: E402
from hant.errors import ConfigError  # noqa: E402
from hant.fashion_mnist import IMAGES, LABELS  # noqa: E402

FILES = [*IMAGES.values(), *LABELS.values()]


@pytest.fixture
def fashion_recipe():
    return load_recipe(ROOT / "recipes/compare_fashion_resnet18.yaml")


@pytest.fixture
def empty_root(tmp_path, monkeypatch):
    root = tmp_path / "fashion-mnist"
    monkeypatch.setattr(fashion_setup, "DEFAULT_ROOT", root)
    return root


def test_digits_recipes_need_nothing(empty_root):
    recipe = load_recipe(ROOT / "recipes/compare_digits.yaml")
    fashion_setup.ensure_fashion_mnist([recipe], say=pytest.fail)


def test_a_recipe_with_its_own_root_is_left_to_the_loader(empty_root, fashion_recipe):
    fashion_recipe.data.root = str(empty_root)
    fashion_setup.ensure_fashion_mnist([fashion_recipe], say=pytest.fail)


def test_a_complete_default_root_installs_nothing(empty_root, fashion_recipe):
    empty_root.mkdir()
    for name in FILES:
        (empty_root / f"{name}.gz").write_bytes(b"")
    fashion_setup.ensure_fashion_mnist([fashion_recipe], say=pytest.fail)


def test_no_apt_says_what_to_do(empty_root, fashion_recipe, monkeypatch):
    monkeypatch.setattr(fashion_setup.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="no apt-get: install Debian's dataset-fashion-mnist"):
        fashion_setup.ensure_fashion_mnist([fashion_recipe], say=print)


def test_not_root_says_what_to_do(empty_root, fashion_recipe, monkeypatch):
    monkeypatch.setattr(fashion_setup.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(fashion_setup.os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match="needs root.*data.root"):
        fashion_setup.ensure_fashion_mnist([fashion_recipe], say=print)


def _as_root_with(monkeypatch, commands):
    monkeypatch.setattr(fashion_setup.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(fashion_setup.os, "geteuid", lambda: 0)
    monkeypatch.setattr(fashion_setup, "install_commands", lambda: commands)


def test_the_install_commands_run_and_are_announced(empty_root, fashion_recipe, monkeypatch):
    make = f"import pathlib; r = pathlib.Path({str(empty_root)!r}); r.mkdir(); [(r / n).write_bytes(b'') for n in {FILES!r}]"
    _as_root_with(monkeypatch, [[sys.executable, "-c", make]])
    said = []
    fashion_setup.ensure_fashion_mnist([fashion_recipe], say=said.append)
    assert said == [f"setup: {sys.executable} -c {make}"]
    assert fashion_setup.default_root_complete()


def test_a_failing_install_is_one_line_with_its_last_output(empty_root, fashion_recipe, monkeypatch):
    _as_root_with(monkeypatch, [[sys.executable, "-c", "import sys; sys.exit('E: Unable to locate package')"]])
    with pytest.raises(ConfigError, match=r"failed \(1\): E: Unable to locate package"):
        fashion_setup.ensure_fashion_mnist([fashion_recipe], say=lambda line: None)


def test_an_install_that_leaves_files_missing_says_so(empty_root, fashion_recipe, monkeypatch):
    _as_root_with(monkeypatch, [[sys.executable, "-c", "pass"]])
    with pytest.raises(ConfigError, match="still lacks its IDX files"):
        fashion_setup.ensure_fashion_mnist([fashion_recipe], say=lambda line: None)


def test_the_install_commands_name_the_package():
    assert fashion_setup.install_commands()[-1][-1] == "dataset-fashion-mnist"
