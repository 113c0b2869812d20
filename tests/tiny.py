"""A recipe small enough to run every stage in seconds."""
from __future__ import annotations

import copy

TINY_RECIPE = {
    "name": "tiny",
    "seed": 0,
    "data": {"dataset": "digits", "image_size": 16, "batch_size": 64},
    "teacher": {
        "model": "resnet18",
        "kwargs": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1], "replace_stem_pool": True},
        "train": {"epochs": 5, "lr": 0.1},
    },
    "target": {"batch_size": 8, "threads": 1},
    "zoo": {"families": {"identity": {}, "pruned": {"widths": [0.5]}, "conv_bn_act": {"kernels": [3]}}},
    "profile": {"rel_precision": 0.1, "time_budget_s": 5, "calibration_time_s": 0.5},
    "distill": {"epochs": 1},
    "search": {"budget": 0.9, "verify_rounds": 2},
    "finetune": {"epochs": 2},
    "wandb": {"mode": "off"},
}


def tiny_recipe(**overrides) -> dict:
    """A deep copy of the tiny recipe with top-level sections updated."""
    recipe = copy.deepcopy(TINY_RECIPE)
    for section, values in overrides.items():
        if isinstance(values, dict):
            recipe.setdefault(section, {}).update(values)
        else:
            recipe[section] = values
    return recipe
