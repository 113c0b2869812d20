"""A dry run: everything a recipe needs is checked in seconds, nothing is trained or measured."""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field

from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..config import Recipe
from ..errors import ConfigError, HantError
from ..latency.runtime import check_target
from ..models import create_model
from ..ops_zoo import build_zoo, find_plugins, list_families, load_plugins
from ..slots import discover_slots
from ..weights import checkpoint_path
from .context import Context, one_class_warning
from .rundir import RunDir


@dataclass
class DryRunReport:
    """What a dry run found."""

    model: str
    parameters: int
    input_shape: tuple[int, ...]
    data: dict
    slots: list[dict] = field(default_factory=list)
    target: str = ""
    target_available: bool = True
    target_note: str = ""
    warnings: list[str] = field(default_factory=list)
    prune: dict | None = None
    """``hant prune``'s plan: method, budget, prunable groups and streams, and the frozen groups with why."""

    @property
    def candidates(self) -> int:
        return sum(s["candidates"] for s in self.slots)


def _prune_plan(recipe: Recipe, model: nn.Module, slots: list, example: Tensor) -> tuple[dict, dict[str, int]]:
    """The prune section checked against the model: groups traced, widths enumerated, nothing measured."""
    from ..pruning.groups import check_prunable, trace_groups
    from ..pruning.space import PruneSpace

    graph = trace_groups(model, example, [s.path for s in slots])
    check_prunable(graph, recipe.teacher.model or type(model).__name__)
    try:
        space = PruneSpace(graph, slots, tuple(float(f) for f in recipe.prune.fractions), recipe.prune.divisor)
    except ValueError as e:
        raise ConfigError(f"prune.fractions: {e}") from e
    plan = {"method": recipe.prune.method, "budget": recipe.search.budget, "groups": len(space.full_counts()),
            "streams": len(space.streams()), "frozen": graph.frozen()}
    return plan, {s.name: len(space.slot_candidates(s)) for s in slots}


def _size(loader: DataLoader) -> int | str:
    """Samples in a loader's dataset (``?`` for an iterable dataset of unknown length)."""
    try:
        return len(loader.dataset)
    except TypeError:
        return "?"


def dry_run(recipe: Recipe, allow_plugins: bool = False, pipeline: str = "run") -> DryRunReport:
    """Validate data, model, slots, zoo and target of ``recipe`` without training or measuring.

    Pretrained weights and checkpoints are not loaded (only their presence is checked); the
    model is built with random weights to find its slots and their candidates (``pipeline="prune"``:
    its coupled channel groups and each slot's widths, from the recipe's ``prune:``). Plugins are
    imported only when ``allow_plugins``; otherwise only their existence is checked and the
    families they would register are left out of the candidate count (with a warning). A recipe whose
    teacher or data comes from a factory needs ``allow_plugins``: the factory is run to check it.
    """
    warnings: list[str] = []
    families = dict(recipe.zoo.families)
    if recipe.zoo.plugins and allow_plugins:
        load_plugins(recipe.zoo.plugins)
    elif recipe.zoo.plugins:
        find_plugins(recipe.zoo.plugins)
        unknown = sorted(set(families) - set(list_families()))
        families = {k: v for k, v in families.items() if k not in unknown}
        warnings.append(
            f"plugins {recipe.zoo.plugins} were not imported (they are code; pass --allow-plugins to run them), "
            f"so families {unknown} are not counted"
        )
    # the teacher and data as a run would see them; the run directory is never written, plugins are handled above
    without_plugins = dataclasses.replace(recipe, zoo=dataclasses.replace(recipe.zoo, plugins=[]))
    ctx = Context(without_plugins, RunDir(tempfile.gettempdir()), allow_plugins=allow_plugins)
    if ctx.user_data is not None:
        data = {"dataset": f"factory {recipe.data.factory}", "classes": ctx.num_classes,
                **{n: _size(ctx.eval_loader(n)) for n in ("train", "val")},
                "test": _size(ctx.eval_loader("test")) if ctx.test_split == "test" else None}
    else:
        splits = ctx.splits
        if splits.num_classes < 2:
            warnings.append(one_class_warning(recipe))
        data = {"dataset": recipe.data.dataset, "classes": splits.num_classes,
                "train": len(splits.train), "val": len(splits.val),
                "test": len(splits.test) if splits.test_split == "test" else None}
    if recipe.teacher.checkpoint:
        checkpoint_path(recipe.teacher.checkpoint)
    t = recipe.teacher
    if ctx.given_teacher is not None:
        model = ctx.given_teacher.eval()
    else:
        model = create_model(t.model, ctx.num_classes, ctx.input_shape[0], t.kwargs, pretrained=False).eval()
    input_shape = ctx.input_shape
    example = ctx.example_input
    slots = discover_slots(model, example, recipe.slots.patterns or None)
    prune, counts = None, {}
    if pipeline == "prune":
        prune, counts = _prune_plan(recipe, model, slots, example)
    else:
        counts = {name: len(specs) for name, specs in build_zoo(model, slots, families).items()}
    report = DryRunReport(
        model=t.factory or t.model,
        parameters=sum(p.numel() for p in model.parameters()),
        input_shape=input_shape,
        data=data,
        slots=[
            {"name": s.name, "kind": s.kind, "in_shape": s.in_shape, "out_shape": s.out_shape, "candidates": counts[s.name]}
            for s in slots
        ],
        target=f"{recipe.target.device}/{recipe.target.backend}/{recipe.target.dtype}, batch {recipe.target.batch_size}",
        warnings=warnings,
        prune=prune,
    )
    try:
        check_target(recipe.target)
    except HantError as e:
        report.target_available, report.target_note = False, str(e)
    return report
