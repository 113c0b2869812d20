"""Values that used to pass a dry run and fail minutes later are refused when the recipe loads,
with the key as written; one-class data and empty recipes are warned about."""
from __future__ import annotations

import logging
from typing import get_args

import pytest
import yaml
from PIL import Image
from tiny import tiny_recipe

from hant.cli.main import main
from hant.config import DistillScore, PruneMethod, check_fields, load_recipe, recipe_from_dict
from hant.distill.losses import FEATURE_LOSSES, FeatureLoss
from hant.distill.scoring import SCORES
from hant.errors import ConfigError
from hant.models import create_model
from hant.pruning.run import METHODS
from hant.recipe_reference import COMMAND, DOC_PATH, render


@pytest.mark.parametrize(
    "section, values, key",
    [
        ("search", {"budget": -0.3}, "search.budget"),
        ("search", {"budget": 0}, "search.budget"),
        ("search", {"budget": float("nan")}, "search.budget"),
        ("search", {"budget_ms": -2.0}, "search.budget_ms"),
        ("search", {"backend": "gurobi"}, "search.backend"),
        ("distill", {"epochs": -1}, "distill.epochs"),
        ("finetune", {"epochs": -1}, "finetune.epochs"),
        ("finetune", {"kd_alpha": 1.5}, "finetune.kd_alpha"),
        ("data", {"batch_size": 0}, "data.batch_size"),
    ],
)
def test_out_of_range_values_name_their_key(section, values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        recipe_from_dict(tiny_recipe(**{section: values}))


def test_dry_run_refuses_a_negative_budget_by_its_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(search={"budget": -0.3})))
    assert main(["run", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "'search.budget'" in err and "-0.3" in err and "budget_ms" not in err


def test_wandb_mode_off_as_yaml_writes_it(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("wandb:\n  mode: off\n")
    assert load_recipe(recipe).wandb.mode == "off"


def test_an_empty_recipe_is_warned_about(tmp_path, caplog):
    recipe = tmp_path / "empty.yaml"
    recipe.write_text("")
    with caplog.at_level(logging.WARNING):
        load_recipe(recipe)
    assert "is empty" in caplog.text


def test_an_unknown_model_never_offers_an_empty_list():
    with pytest.raises(ConfigError) as info:
        create_model("zzqx_not_a_model", 10, 3)
    assert "[]" not in str(info.value)


def test_dry_run_warns_about_one_class_data(tmp_path, capsys):
    for split in ("train", "val"):
        folder = tmp_path / "data" / split / "only"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (12, 12), (i * 60, 30, 90)).save(folder / f"{i}.png")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(data={"dataset": "imagefolder", "root": str(tmp_path / "data")})))
    assert main(["run", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "only one class" in out
    assert "no test split (accuracies are reported on val)" in out


@pytest.mark.parametrize("key, value", [("loss", "l7"), ("score", "accuracy")])
def test_unknown_distill_choices_name_their_key(key, value):
    with pytest.raises(ConfigError, match=f"distill.{key}"):
        recipe_from_dict(tiny_recipe(distill={key: value}))


@pytest.mark.parametrize(
    "section, values, key, allowed",
    [
        ("prune", {"method": "l1"}, "prune.method", "['halp', 'splamp']"),
        ("search", {"backend": "gurobi"}, "search.backend", "['cpsat', 'scip', 'cbc']"),
        ("distill", {"loss": "l7"}, "distill.loss", "['nmse', 'mse']"),
        ("distill", {"epochs": -2}, "distill.epochs", ">= 0"),
        ("teacher", {"train": {"epochs": -1}}, "teacher.train.epochs", ">= 0"),
        ("search", {"budget": 1.5}, "search.budget", "in (0, 1]"),
        ("prune", {"fractions": [1.0, 0.5, 0.0]}, "prune.fractions", "in (0, 1]"),
        ("prune", {"fractions": [1.0, 1.25]}, "prune.fractions", "in (0, 1]"),
        ("target", {"backend": "tvm"}, "target.backend", "'openvino'"),
    ],
)
def test_a_wrong_choice_or_range_names_the_key_and_what_it_allows(section, values, key, allowed):
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(tiny_recipe(**{section: values}))
    assert f"'{key}'" in str(info.value) and allowed in str(info.value)


def test_dry_run_refuses_an_unknown_prune_method(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(prune={"method": "magnitude"})))
    assert main(["run", str(recipe), "--dry-run"]) == 2
    assert "'prune.method'" in capsys.readouterr().err


def test_command_line_overrides_are_checked_like_the_recipe():
    recipe = recipe_from_dict(tiny_recipe())
    recipe.search.margin = 1.0
    with pytest.raises(ConfigError, match=r"'search\.margin' must be in \[0, 1\)"):
        check_fields(recipe)


def test_the_recipe_choices_are_the_implementations():
    assert get_args(FeatureLoss) == tuple(FEATURE_LOSSES)
    assert get_args(PruneMethod) == tuple(METHODS)
    assert get_args(DistillScore) == SCORES


def test_the_recipe_reference_in_docs_is_current():
    assert DOC_PATH.read_text() == render(), f"docs/recipe_reference.md is stale; run {COMMAND}"
    for section in ("data", "teacher.train", "target", "search", "prune", "wandb"):
        assert f"## `{section}`" in DOC_PATH.read_text()
