"""Recipes: defaults, overrides, validation of keys and types, and YAML loading."""
from __future__ import annotations

from pathlib import Path

import pytest

from hant.config import Recipe, load_recipe, recipe_from_dict
from hant.errors import ConfigError, HantError
from hant.latency.target import LatencyTarget

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"


def test_empty_recipe_gives_the_defaults():
    r = recipe_from_dict({})
    assert r == Recipe()
    assert r.name == "run" and r.seed == 0
    assert r.data.dataset == "digits" and r.data.image_size == 32 and r.data.batch_size == 64 and r.data.root is None
    assert r.teacher.model == "resnet18" and r.teacher.checkpoint is None and r.teacher.kwargs == {}
    assert r.teacher.train.epochs == 15 and r.teacher.train.lr == 0.05
    assert r.target == LatencyTarget()
    assert r.slots.patterns == []
    assert set(r.zoo.families) == {"identity", "pruned", "conv_bn_act", "dwsep", "mbconv"}
    assert r.zoo.plugins == []
    assert r.distill.loss == "nmse" and r.search.backend == "cpsat" and r.search.budget_ms is None
    # the fine-tuning schedule overrides some training defaults and inherits the rest
    assert r.finetune.epochs == 10 and r.finetune.lr == 0.01
    assert r.finetune.weight_decay == 5e-4 and r.finetune.optimizer == "sgd"
    assert r.finetune.kd_temperature == 4.0 and r.finetune.kd_alpha == 0.7


def test_none_sections_mean_defaults():
    assert recipe_from_dict({"data": None, "teacher": {"train": None}}) == Recipe()


def test_defaults_are_not_shared_between_recipes():
    a, b = recipe_from_dict({}), recipe_from_dict({})
    a.zoo.families["mbconv"]["kernels"] = [3]
    a.slots.patterns.append("blocks.*")
    a.teacher.kwargs["drop_rate"] = 0.1
    assert b.zoo.families["mbconv"] == {}
    assert b.slots.patterns == [] and b.teacher.kwargs == {}


def test_nested_overrides_keep_sibling_defaults():
    r = recipe_from_dict(
        {
            "name": "x",
            "teacher": {"model": "resnet34", "train": {"epochs": 3}},
            "target": {"batch_size": 8, "threads": 2},
            "search": {"budget_ms": 4},
            "finetune": {"kd_alpha": 0.5},
        }
    )
    assert r.name == "x"
    assert r.teacher.model == "resnet34"
    assert r.teacher.train.epochs == 3
    assert r.teacher.train.lr == 0.05  # sibling default kept
    assert r.teacher.pretrained is False
    assert isinstance(r.target, LatencyTarget)
    assert (r.target.batch_size, r.target.threads, r.target.device) == (8, 2, "cpu")
    assert r.search.budget_ms == 4.0 and isinstance(r.search.budget_ms, float)
    assert r.search.budget == 0.5
    assert r.finetune.kd_alpha == 0.5 and r.finetune.epochs == 10
    assert r.data == recipe_from_dict({}).data


def test_ints_become_floats_where_floats_are_expected():
    r = recipe_from_dict({"teacher": {"train": {"lr": 1}}, "distill": {"weight_decay": 0}})
    assert r.teacher.train.lr == 1.0 and isinstance(r.teacher.train.lr, float)
    assert isinstance(r.distill.weight_decay, float)


def test_zoo_families_override_replaces_the_mapping():
    r = recipe_from_dict({"zoo": {"families": {"mbconv": {"kernels": [3]}}, "plugins": ["my_zoo.py"]}})
    assert r.zoo.families == {"mbconv": {"kernels": [3]}}
    assert r.zoo.plugins == ["my_zoo.py"]


def test_to_dict_round_trips():
    r = recipe_from_dict({"name": "rt", "teacher": {"kwargs": {"drop_rate": 0.1}}, "search": {"budget_ms": 2.5}})
    assert recipe_from_dict(r.to_dict()) == r


@pytest.mark.parametrize(
    "data, path",
    [
        ({"nmae": "x"}, "nmae"),
        ({"data": {"batchsize": 3}}, "data.batchsize"),
        ({"teacher": {"train": {"epoch": 3}}}, "teacher.train.epoch"),
        ({"finetune": {"kd_temp": 3.0}}, "finetune.kd_temp"),
        ({"target": {"gpu": True}}, "target.gpu"),
        ({"zoo": {"family": {}}}, "zoo.family"),
    ],
)
def test_unknown_keys_are_named_by_dotted_path(data, path):
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(data)
    assert repr(path) in str(e.value)
    assert isinstance(e.value, HantError)


def test_unknown_key_message_lists_the_known_keys():
    with pytest.raises(ConfigError) as e:
        recipe_from_dict({"teacher": {"train": {"epoch": 3}}})
    assert "epochs" in str(e.value) and "warmup_epochs" in str(e.value)


@pytest.mark.parametrize(
    "data, path",
    [
        ({"seed": "0"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"name": 3}, "name"),
        ({"data": {"batch_size": "64"}}, "data.batch_size"),
        ({"data": {"augment": 1}}, "data.augment"),
        ({"data": {"root": 5}}, "data.root"),
        ({"teacher": {"train": {"lr": "fast"}}}, "teacher.train.lr"),
        ({"teacher": {"kwargs": ["a"]}}, "teacher.kwargs"),
        ({"slots": {"patterns": "blocks.*"}}, "slots.patterns"),
        ({"search": {"budget": True}}, "search.budget"),
        ({"search": {"budget_ms": "3"}}, "search.budget_ms"),
        ({"target": {"batch_size": "8"}}, "target.batch_size"),
    ],
)
def test_wrong_types_raise(data, path):
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(data)
    assert repr(path) in str(e.value)


@pytest.mark.parametrize(
    "data, path",
    [
        ({"seed": True}, "seed"),
        ({"distill": {"epochs": True}}, "distill.epochs"),
        ({"target": {"threads": True}}, "target.threads"),
    ],
)
def test_booleans_are_not_integers(data, path):
    """YAML ``yes``/``true`` must not pass for a count (floats already reject booleans)."""
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(data)
    assert repr(path) in str(e.value)


@pytest.mark.parametrize("section", ["data", "teacher", "target", "search"])
def test_a_section_must_be_a_mapping(section):
    with pytest.raises(ConfigError, match=section):
        recipe_from_dict({section: [1, 2]})


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="top level"):
        recipe_from_dict(["name", "x"])


def test_latency_target_values_are_validated():
    with pytest.raises(ConfigError, match="tvm"):
        recipe_from_dict({"target": {"backend": "tvm"}})
    with pytest.raises(ConfigError, match="float16"):
        recipe_from_dict({"target": {"dtype": "float16"}})  # half precision on the CPU


def test_load_recipe_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_recipe(missing)


def test_load_recipe_invalid_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_recipe(bad)


def test_load_recipe_empty_file_and_nested_error(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_recipe(empty) == Recipe()
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("distill:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="distill.learning_rate"):
        load_recipe(str(wrong))


def test_demo_recipe_loads_and_validates(tiny_resnet):
    r = load_recipe(DEMO)
    assert r.name == "demo" and r.seed == 0
    assert r.data.dataset == "digits" and r.data.image_size == 32
    assert r.teacher.model == "resnet18" and r.teacher.kwargs == {"replace_stem_pool": True}
    assert r.teacher.train.epochs == 12
    assert r.target == LatencyTarget(device="cpu", backend="openvino", dtype="int8", batch_size=64, threads=1)
    assert set(r.targets) == {"onnxruntime_int8", "torch"}
    assert r.zoo.families["pruned"] == {"widths": [0.25, 0.5, 0.75]}
    assert r.profile.time_budget_s == 60.0 and isinstance(r.profile.time_budget_s, float)
    assert r.search.budget == 0.5 and r.search.backend == "cpsat"
    assert r.finetune.epochs == 8 and r.finetune.kd_alpha == 0.7
    # its zoo section names real families with valid options
    import torch

    from hant.ops_zoo import build_zoo
    from hant.slots import discover_slots

    slots = discover_slots(tiny_resnet, torch.zeros(1, 1, 32, 32))
    zoo = build_zoo(tiny_resnet, slots, r.zoo.families)
    assert {s.family for specs in zoo.values() for s in specs} == {"keep", "pruned", "conv_bn_act", "dwsep", "mbconv"}
    # keep + one distinct pruned width (16 inner channels: 25 % and 50 % both round to 8, 75 % to
    # the full 16) + conv_bn_act k1/k3 + dwsep + two MBConv expansions
    assert len(zoo["layer2.0"]) == 1 + 1 + 2 + 1 + 2
