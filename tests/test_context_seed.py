"""Context.seed: runs that differ only in it share the data splits and teacher and differ in training."""
from __future__ import annotations

import torch
from tiny import tiny_recipe

from hant.config import recipe_from_dict
from hant.pipeline import Context, RunDir
from hant.pipeline.prune_stages import PRUNE_STAGES
from hant.pipeline.runner import STAGES


def _first_labels(loader) -> torch.Tensor:
    return next(iter(loader))[1]


def test_the_seed_moves_training_but_not_the_splits_or_the_teacher(tmp_path):
    recipe = recipe_from_dict(tiny_recipe())
    base, other = Context(recipe, RunDir(tmp_path)), Context(recipe, RunDir(tmp_path), seed=recipe.seed + 1)
    assert base.seed == recipe.seed and other.seed == recipe.seed + 1
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(base.splits, split).tensors[0], getattr(other.splits, split).tensors[0])
    assert not torch.equal(_first_labels(base.train_loader(seed_offset=2)), _first_labels(other.train_loader(seed_offset=2)))
    # the teacher's batches follow recipe.seed whatever the run's seed
    assert torch.equal(_first_labels(base.train_loader()), _first_labels(other.train_loader(base_seed=recipe.seed)))
    for stage in (STAGES["teacher"], STAGES["slots"], STAGES["profile"]):
        assert stage.config(base) == stage.config(other), stage.name
    for stage in (STAGES["distill"], STAGES["finetune"], PRUNE_STAGES["prune"], PRUNE_STAGES["finetune"]):
        assert stage.config(base) != stage.config(other), stage.name
