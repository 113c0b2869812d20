"""The Python API: ``hant.optimize`` and ``hant.prune`` run the pipelines of ``hant run`` and
``hant prune`` on a caller's own model and data."""
from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .config import Recipe, recipe_from_dict
from .errors import ModelError
from .io import read_json
from .latency.target import LatencyTarget
from .pipeline import Context, RunDir
from .pipeline.prune_stages import PRUNE_STAGES
from .pipeline.runner import STAGES, Stage
from .pipeline.tracked import run_tracked_stages
from .student import load_student
from .user_code import reference_of, resolve_factory
from .user_data import UserData
from .weights import state_dict_misfit

log = logging.getLogger(__name__)

STUDENT_FILES = ("arch.json", "weights.safetensors", "metrics.json")


@dataclass
class Result:
    """What ``optimize`` made: the student (reloaded from its saved files), the report and the run directory."""

    student: nn.Module
    report: dict
    """The content of the run's ``report.json``."""
    run_dir: Path

    def save(self, path: str | Path) -> Path:
        """Copy the saved student (``arch.json``, ``weights.safetensors``, ``metrics.json``) to ``path``;
        ``hant.load_student(path, allow_plugins=True)`` rebuilds it there."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in STUDENT_FILES:
            shutil.copy2(RunDir(self.run_dir).student_dir / name, path / name)
        return path


def _log_event(stage: str, event: str, info: dict) -> None:
    log.info("[%s] %s %s", stage, event, {k: v for k, v in info.items() if not isinstance(v, (list, dict))})


def optimize_recipe(target: LatencyTarget | dict, budget: float, factory: str, zoo: dict | None, stage_options: dict) -> Recipe:
    """The recipe ``optimize`` runs: ``stage_options`` (recipe sections by name, e.g. ``distill={"epochs": 1}``)
    with the target, the budget (a fraction of the teacher's latency), the zoo and the teacher's factory."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in stage_options.items()}
    data.setdefault("name", "optimize")
    data["target"] = target.to_dict() if isinstance(target, LatencyTarget) else dict(target)
    data["search"] = {**data.get("search", {}), "budget": budget}
    data["teacher"] = {**data.get("teacher", {}), "factory": factory}
    if zoo is not None:
        data["zoo"] = dict(zoo)
    return recipe_from_dict(data)


def _check_factory(model: nn.Module, factory: str, kwargs: dict) -> None:
    """One clear error unless ``factory`` builds the architecture of ``model``."""
    build = resolve_factory(factory)
    try:
        built = build(**kwargs)
    except Exception as e:  # the caller's code: any failure is theirs to fix, said in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(f"factory {factory!r} failed ({type(e).__name__}: {first}); pass factory=, the function "
                         "that builds the model's architecture") from e
    problem = state_dict_misfit(built, model.state_dict()) if isinstance(built, nn.Module) else f"it returned {type(built).__name__}"
    if problem:
        raise ModelError(f"factory {factory!r} does not build the given model's architecture ({problem}); pass the function that does")


def optimize(
    model: nn.Module,
    train: Any,
    val: Any,
    *,
    example_input: torch.Tensor,
    target: LatencyTarget | dict,
    budget: float,
    factory: str | Callable[..., nn.Module] | None = None,
    test: Any = None,
    zoo: dict | None = None,
    run_dir: str | Path | None = None,
    force: bool = False,
    **stage_options: Any,
) -> Result:
    """Accelerate a trained ``model`` for ``target`` within ``budget`` x its latency, by the stages of ``hant run``.

    ``train``, ``val`` and ``test`` (optional; validation doubles as test) are DataLoaders, used as they are,
    or Datasets (batched by ``data.batch_size``) of ``(input, label)``; the training split may yield inputs
    alone for the layer-wise phase, but fine-tuning needs its labels. ``example_input`` is a batch the model
    takes. ``factory`` (a module-level function, or ``"file.py:function"``) builds the model's architecture:
    the saved student's ``arch.json`` names it, so ``load_student(..., allow_plugins=True)`` rebuilds the
    student without the teacher's weights. Without it, the model's own class is the factory when calling it
    without arguments builds the same architecture (checked; otherwise one error asks for ``factory``).
    ``zoo`` holds the recipe's zoo fields (``families``, ``plugins``, ``precisions``); ``stage_options`` any
    other recipe section by name (``slots={"patterns": [...]}`` names slots by module path;
    ``distill={"epochs": 1}``, ``wandb={"mode": "off"}``, ``seed=1``, ...).

    Stages run over ``run_dir`` (default: ``<temp dir>/hant/<name>``): a second call with the same inputs
    skips the finished stages, a changed model, data or setting re-runs those it affects. Code named in the
    arguments (the factory, zoo plugins) is the caller's own and runs without ``allow_plugins``.
    """
    return _run_stages(model, UserData(train, val, test), example_input, target, budget, factory, zoo, run_dir,
                       force, stage_options, STAGES)


def prune(
    model: nn.Module,
    train: Any,
    val: Any,
    *,
    example_input: torch.Tensor,
    target: LatencyTarget | dict,
    budget: float,
    method: str = "halp",
    factory: str | Callable[..., nn.Module] | None = None,
    test: Any = None,
    run_dir: str | Path | None = None,
    force: bool = False,
    **stage_options: Any,
) -> Result:
    """Channel-prune a trained ``model`` for ``target`` within ``budget`` x its latency by ``method``
    (``halp`` or ``splamp``), by the stages of ``hant prune``: the arguments are those of :func:`optimize`
    (``prune={"fractions": [...]}`` and the other ``prune`` fields go in ``stage_options``); the student
    is the pruned, fine-tuned network."""
    options = {**stage_options, "prune": {**stage_options.get("prune", {}), "method": method}}
    options.setdefault("name", f"prune-{method}")
    return _run_stages(model, UserData(train, val, test), example_input, target, budget, factory, None, run_dir,
                       force, options, PRUNE_STAGES)


def _run_stages(
    model: nn.Module, data: UserData, example_input: torch.Tensor, target: LatencyTarget | dict, budget: float,
    factory: str | Callable[..., nn.Module] | None, zoo: dict | None, run_dir: str | Path | None, force: bool,
    stage_options: dict, pipeline: Mapping[str, Stage],
) -> Result:
    """What ``optimize`` and ``prune`` share: the recipe, the checks of the caller's model and data, and
    the tracked stages of ``pipeline`` over the run directory."""
    ref = reference_of(type(model) if factory is None else factory)
    recipe = optimize_recipe(target, budget, ref, zoo, stage_options)
    root = Path(run_dir) if run_dir is not None else Path(tempfile.gettempdir()) / "hant" / recipe.name
    ctx = Context(recipe, RunDir(root), allow_plugins=True, teacher=model, data=data, example_input=example_input)
    _check_factory(model, ref, recipe.teacher.kwargs)
    ctx.check_given()
    run_tracked_stages(ctx, "report", force, _log_event, pipeline=pipeline)
    run = ctx.run
    return Result(load_student(run.student_dir, allow_plugins=True), read_json(run.report_json), run.root)
