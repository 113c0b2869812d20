"""What the stages share: the recipe, the run directory, and lazily loaded data and teacher."""
from __future__ import annotations

import logging
from functools import cached_property

from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..config import Recipe
from ..data import DataSplits, load_splits, make_loader, random_shift
from ..distributed import is_distributed
from ..errors import PluginError, RunDirError
from ..io import read_json
from ..loaders import timm_loader
from ..models import create_model
from ..ops_zoo import CandidateSpec, load_plugins, zoo_from_json
from ..slots import Slot, slots_from_json
from ..weights import load_file
from .rundir import RunDir

EVAL_BATCH = 256
log = logging.getLogger(__name__)


def one_class_warning(recipe: Recipe) -> str:
    """What to say when the data has a single class (accuracy is then 100 % by construction)."""
    return (
        f"the data under {recipe.data.root or recipe.data.dataset!r} has only one class, so every accuracy is "
        "trivially 100 %; add a folder per class under train/ and val/"
    )


def check_plugins_allowed(recipe: Recipe, allow_plugins: bool) -> None:
    """Refuse a recipe whose ``zoo.plugins`` (executed code) the caller did not allow."""
    if recipe.zoo.plugins and not allow_plugins:
        raise PluginError(
            f"zoo.plugins names {recipe.zoo.plugins}, which are Python code run on import; read them, then "
            "pass --allow-plugins (API: allow_plugins=True) if you trust them"
        )


class Context:
    """The recipe and run directory of one run, with the objects several stages load."""

    def __init__(self, recipe: Recipe, run: RunDir, allow_plugins: bool = False):
        self.recipe = recipe
        self.run = run
        self.allow_plugins = allow_plugins
        if recipe.zoo.plugins:
            check_plugins_allowed(recipe, allow_plugins)
            load_plugins(recipe.zoo.plugins)

    @cached_property
    def splits(self) -> DataSplits:
        splits = load_splits(self.recipe.data, self.recipe.seed)
        if splits.num_classes < 2:
            log.warning(one_class_warning(self.recipe))
        return splits

    def _timm_loader(self, split: str, batch_size: int, training: bool) -> DataLoader:
        d = self.recipe.data
        return timm_loader(
            getattr(self.splits, split), d.image_size, batch_size, training=training, augment=d.augment,
            workers=d.workers, distributed=is_distributed(), model_name=self.recipe.teacher.model,
        )

    def train_loader(self, seed_offset: int = 0):
        """Shuffled training batches; each torchrun process gets its own share. ImageFolder data
        comes through timm's loader factory (its transforms, the teacher's preprocessing)."""
        d = self.recipe.data
        seed = self.recipe.seed + seed_offset
        if d.dataset == "imagefolder":
            return self._timm_loader("train", d.batch_size, training=True)
        if is_distributed():
            sampler = DistributedSampler(self.splits.train, shuffle=True, seed=seed)
            return DataLoader(self.splits.train, batch_size=d.batch_size, sampler=sampler, num_workers=d.workers)
        return make_loader(self.splits.train, d.batch_size, True, seed, d.workers)

    def calibration_loader(self, batch_size: int):
        """Training images in a fixed order without augmentation: what int8 quantization calibrates on."""
        if self.recipe.data.dataset == "imagefolder":
            return self._timm_loader("train", batch_size, training=False)
        return make_loader(self.splits.train, batch_size, False, self.recipe.seed, self.recipe.data.workers)

    def eval_loader(self, split: str):
        """Batches of ``split`` in a fixed order, the whole split on every process."""
        if self.recipe.data.dataset == "imagefolder":
            return self._timm_loader(split, EVAL_BATCH, training=False)
        return make_loader(getattr(self.splits, split), EVAL_BATCH, False, self.recipe.seed, self.recipe.data.workers)

    def augment(self):
        """Tensor augmentation for the embedded digits (ImageFolder augments in its transforms).

        It draws from torch's global stream, which the stages seed and training checkpoints save
        and restore, so a resumed run shifts its batches exactly as an uninterrupted one."""
        if not (self.recipe.data.augment and self.recipe.data.dataset in ("digits", "digits_hard")):
            return None
        return lambda x: random_shift(x, 2, None)

    @cached_property
    def model_desc(self) -> dict:
        """How to rebuild the teacher's architecture: timm name, classes, channels, kwargs."""
        t = self.recipe.teacher
        return {
            "name": t.model,
            "num_classes": self.splits.num_classes,
            "in_chans": self.splits.in_chans,
            "kwargs": dict(t.kwargs),
        }

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape of the network."""
        size = self.recipe.data.image_size
        return (self.splits.in_chans, size, size)

    @cached_property
    def teacher(self) -> nn.Module:
        """The trained teacher, in eval mode (written by the teacher stage)."""
        if not self.run.teacher_weights.is_file():
            raise RunDirError(f"{self.run.root} has no trained teacher; run `hant teacher {self.run.root}` first")
        d = read_json(self.run.teacher_meta)["model"]
        model = create_model(d["name"], d["num_classes"], d["in_chans"], d["kwargs"])
        return load_file(model, self.run.teacher_weights, "run `hant teacher --force` again").eval()

    @cached_property
    def slots(self) -> list[Slot]:
        return slots_from_json(read_json(self.run.slots))

    @cached_property
    def zoo(self) -> dict[str, list[CandidateSpec]]:
        return zoo_from_json(read_json(self.run.zoo))
