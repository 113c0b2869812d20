"""What the stages share: the recipe, the run directory, and lazily loaded data and teacher."""
from __future__ import annotations

import copy
import logging
from functools import cached_property

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..config import Recipe
from ..data import DataSplits, load_splits, make_loader, random_shift
from ..distributed import is_distributed
from ..errors import ModelError, PluginError, RunDirError
from ..io import read_json
from ..loaders import timm_loader
from ..models import create_model
from ..ops_zoo import CandidateSpec, load_plugins, zoo_from_json
from ..pruning.streams import StreamLayout
from ..slots import Slot, slots_from_json
from ..user_code import check_allowed, resolve_factory
from ..user_data import UserData, as_loader, check_split, in_order, count_classes, split_batch, split_fingerprint, user_data
from ..user_model import check_forward, model_fingerprint, module_description
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
    """The recipe and run directory of one run, with the objects several stages load.

    The teacher and the data come from the recipe (a timm model, the embedded digits, Fashion-MNIST or an ImageFolder,
    or the functions ``teacher.factory`` / ``data.factory`` name), or from a Python caller
    (``hant.optimize``): a trained ``teacher`` module, ``data`` splits and the ``example_input`` the
    model takes. Stage fingerprints cover either source (:attr:`teacher_inputs`, :attr:`data_inputs`).

    ``seed`` (default ``recipe.seed``) seeds the stages after the teacher: distillation, pruning and
    fine-tuning. The data splits, the example input, the profile and the teacher keep ``recipe.seed``,
    so runs that differ only in ``seed`` share their teacher and test split (a multi-seed comparison).
    """

    def __init__(
        self,
        recipe: Recipe,
        run: RunDir,
        allow_plugins: bool = False,
        teacher: nn.Module | None = None,
        data: UserData | None = None,
        example_input: torch.Tensor | None = None,
        seed: int | None = None,
    ):
        self.recipe = recipe
        self.seed = recipe.seed if seed is None else seed
        self.run = run
        self.allow_plugins = allow_plugins
        if recipe.zoo.plugins:
            check_plugins_allowed(recipe, allow_plugins)
            load_plugins(recipe.zoo.plugins)
        if teacher is not None and not recipe.teacher.factory:
            raise ModelError("a teacher given as a module needs teacher.factory, the function that rebuilds its architecture")
        called = [f"teacher.factory {recipe.teacher.factory!r}"] if teacher is None and recipe.teacher.factory else []
        called += [f"data.factory {recipe.data.factory!r}"] if data is None and recipe.data.factory else []
        check_allowed("the recipe", called, allow_plugins)
        self._teacher = teacher
        self._data = data
        self._example = example_input

    @cached_property
    def splits(self) -> DataSplits:
        splits = load_splits(self.recipe.data, self.recipe.seed, self.recipe.teacher.model)
        if splits.num_classes < 2:
            log.warning(one_class_warning(self.recipe))
        return splits

    @property
    def test_split(self) -> str:
        """The split accuracies are reported on: ``test`` when the data has one that no stage
        selects on, else ``val`` (an ImageFolder without ``test/``, user data without a test split)."""
        if self.user_data is not None:
            return "val" if self.user_data.test is None else "test"
        return self.splits.test_split

    @cached_property
    def _user_splits(self) -> UserData | None:
        if self._data is not None:
            return self._data
        if self.recipe.data.factory:
            return user_data(resolve_factory(self.recipe.data.factory)())
        return None

    @cached_property
    def user_data(self) -> UserData | None:
        """The caller's or ``data.factory``'s splits, each checked against the input shape (None: the
        recipe's dataset). Validation and test need labels; training needs them only to fine-tune."""
        data = self._user_splits
        if data is not None:
            for name in ("train", "val", "test"):
                if name != "test" or data.test is not None:
                    check_split(name, self._user_loader(name, 2, False), self.input_shape, labels=name != "train")
        return data

    def _user_loader(self, split: str, batch_size: int, shuffle: bool, seed: int | None = None) -> DataLoader:
        d = self.recipe.data
        return as_loader(self._user_splits.split(split), batch_size, shuffle, self.recipe.seed if seed is None else seed, d.workers)

    @cached_property
    def example_input(self) -> torch.Tensor:
        """The caller's example input, else two random inputs of the input shape."""
        if self._example is not None:
            return self._example
        return torch.randn(2, *self.input_shape, generator=torch.Generator().manual_seed(self.recipe.seed))

    @cached_property
    def given_teacher(self) -> nn.Module | None:
        """The teacher as the caller or ``teacher.factory`` gave it, checked on the example input
        (None for a timm teacher)."""
        model = self._teacher
        if model is None and self.recipe.teacher.factory:
            model = resolve_factory(self.recipe.teacher.factory)(**self.recipe.teacher.kwargs)
            if not isinstance(model, nn.Module):
                raise ModelError(f"teacher.factory {self.recipe.teacher.factory!r} returned {type(model).__name__}, not an nn.Module")
        if model is not None:
            check_forward(model, self.example_input)
        return model

    def check_given(self) -> None:
        """Check a given teacher (its forward on the example input) and user data (each split's first
        batch against the input shape and labels) now, so that bad input fails before any stage runs."""
        _ = self.given_teacher, self.user_data

    @cached_property
    def teacher_inputs(self) -> list:
        """What identifies a teacher given as a module: a hash of its structure and weights (a timm
        teacher is named by the recipe's teacher section alone)."""
        return [] if self.given_teacher is None else [model_fingerprint(self.given_teacher)]

    @cached_property
    def data_inputs(self) -> list:
        """What identifies user data: the input shape and each split's fingerprint (the recipe's own
        datasets are named by its data section alone)."""
        if self.user_data is None:
            return []
        names = ["train", "val"] + (["test"] if self.user_data.test is not None else [])
        return [list(self.input_shape), {n: split_fingerprint(self._user_loader(n, EVAL_BATCH, False)) for n in names}]

    def _timm_loader(self, split: str, batch_size: int, training: bool) -> DataLoader:
        d = self.recipe.data
        return timm_loader(
            getattr(self.splits, split), d.image_size, batch_size, training=training, augment=d.augment,
            workers=d.workers, distributed=is_distributed(), model_name=self.recipe.teacher.model,
        )

    def train_loader(self, seed_offset: int = 0, base_seed: int | None = None):
        """Shuffled training batches in an order drawn from ``base_seed`` (default :attr:`seed`) plus
        ``seed_offset``; each torchrun process gets its own share. ImageFolder data comes through
        timm's loader factory (its transforms, the teacher's preprocessing); a caller's DataLoader is
        used as it is."""
        d = self.recipe.data
        seed = (self.seed if base_seed is None else base_seed) + seed_offset
        if self.user_data is not None:
            return self._user_loader("train", d.batch_size, True, seed)
        if d.dataset == "imagefolder":
            return self._timm_loader("train", d.batch_size, training=True)
        if is_distributed():
            sampler = DistributedSampler(self.splits.train, shuffle=True, seed=seed)
            return DataLoader(self.splits.train, batch_size=d.batch_size, sampler=sampler, num_workers=d.workers)
        return make_loader(self.splits.train, d.batch_size, True, seed, d.workers)

    def calibration_loader(self, batch_size: int):
        """Training images in a fixed order without augmentation: what int8 quantization calibrates on."""
        if self.user_data is not None:
            return in_order(self._user_loader("train", batch_size, False), batch_size)
        if self.recipe.data.dataset == "imagefolder":
            return self._timm_loader("train", batch_size, training=False)
        return make_loader(self.splits.train, batch_size, False, self.recipe.seed, self.recipe.data.workers)

    def eval_loader(self, split: str):
        """Batches of ``split`` in a fixed order, the whole split on every process."""
        if self.user_data is not None:
            return self._user_loader(split, EVAL_BATCH, False)
        if self.recipe.data.dataset == "imagefolder":
            return self._timm_loader(split, EVAL_BATCH, training=False)
        return make_loader(getattr(self.splits, split), EVAL_BATCH, False, self.recipe.seed, self.recipe.data.workers)

    def augment(self):
        """Tensor augmentation (random shifts) for the digits and Fashion-MNIST (ImageFolder and user
        data augment in their transforms).

        It draws from torch's global stream, which the stages seed and training checkpoints save
        and restore, so a resumed run shifts its batches exactly as an uninterrupted one."""
        d = self.recipe.data
        if self.user_data is not None or not d.augment or not self.splits.shift:
            return None
        shift = self.splits.shift
        return lambda x: random_shift(x, shift, None)

    @cached_property
    def num_classes(self) -> int:
        """Classes the teacher tells apart: its output width, else the data's."""
        if self.given_teacher is not None:
            return int(check_forward(self.given_teacher, self.example_input).shape[1])
        if self.user_data is not None:
            return count_classes(self.eval_loader("val"))
        return self.splits.num_classes

    @cached_property
    def model_desc(self) -> dict:
        """How to rebuild the teacher's architecture: timm name, classes, channels, kwargs; or the
        factory that builds a teacher given as a module (``source: factory``)."""
        t = self.recipe.teacher
        if self.given_teacher is not None:
            return module_description(self.given_teacher, self.num_classes, self.input_shape[0], t.factory, t.kwargs)
        return {
            "name": t.model,
            "num_classes": self.num_classes,
            "in_chans": self.input_shape[0],
            "kwargs": dict(t.kwargs),
        }

    @cached_property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape of the network: the example input's, the user data's, the recipe's."""
        if self._example is not None:
            return tuple(self._example.shape[1:])
        if self._user_splits is not None:
            x, _ = split_batch(next(iter(self._user_loader("train", 2, False))))
            return tuple(x.shape[1:])
        size = self.recipe.data.image_size
        return (self.splits.in_chans, size, size)

    @cached_property
    def teacher(self) -> nn.Module:
        """The trained teacher, in eval mode (written by the teacher stage)."""
        if not self.run.teacher_weights.is_file():
            raise RunDirError(f"{self.run.root} has no trained teacher; run `hant teacher {self.run.root}` first")
        if self.given_teacher is not None:
            model = copy.deepcopy(self.given_teacher)
        else:
            d = read_json(self.run.teacher_meta)["model"]
            model = create_model(d["name"], d["num_classes"], d["in_chans"], d["kwargs"])
        return load_file(model, self.run.teacher_weights, "run `hant teacher --force` again").eval()

    @cached_property
    def stream_layout(self) -> StreamLayout:
        """The teacher's residual streams and how they meet the slots (runs whose zoo has ``stream_cut``)."""
        return StreamLayout.trace(self.teacher, self.input_shape, [s.path for s in self.slots])

    @cached_property
    def slots(self) -> list[Slot]:
        return slots_from_json(read_json(self.run.slots))

    @cached_property
    def zoo(self) -> dict[str, list[CandidateSpec]]:
        return zoo_from_json(read_json(self.run.zoo))
