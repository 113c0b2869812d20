"""A dry run: everything a recipe needs is checked in seconds, nothing is trained or measured."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import Recipe
from ..data import load_splits
from ..errors import ConfigError, HantError
from ..latency.runtime import check_target
from ..models import create_model
from ..ops_zoo import build_zoo, find_plugins, list_families, load_plugins
from ..slots import discover_slots
from .context import one_class_warning


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


def _prune_plan(recipe: Recipe, model: torch.nn.Module, slots: list, example: torch.Tensor) -> tuple[dict, dict[str, int]]:
    """The prune section checked against the model: groups traced, widths enumerated, nothing measured."""
    from ..prune.groups import check_prunable, trace_groups
    from ..prune.run import METHODS
    from ..prune.space import PruneSpace

    if recipe.prune.method not in METHODS:
        raise ConfigError(f"unknown prune.method {recipe.prune.method!r}; choose one of {list(METHODS)}")
    graph = trace_groups(model, example, [s.path for s in slots])
    check_prunable(graph, recipe.teacher.model)
    try:
        space = PruneSpace(graph, slots, tuple(float(f) for f in recipe.prune.fractions), recipe.prune.divisor)
    except ValueError as e:
        raise ConfigError(f"prune.fractions: {e}") from e
    plan = {"method": recipe.prune.method, "budget": recipe.search.budget, "groups": len(space.full_counts()),
            "streams": len(space.streams()), "frozen": graph.frozen()}
    return plan, {s.name: len(space.slot_candidates(s)) for s in slots}


def dry_run(recipe: Recipe, allow_plugins: bool = False, pipeline: str = "run") -> DryRunReport:
    """Validate data, model, slots, zoo and target of ``recipe`` without training or measuring.

    Pretrained weights and checkpoints are not loaded (only their presence is checked); the
    model is built with random weights to find its slots and their candidates (``pipeline="prune"``:
    its coupled channel groups and each slot's widths, from the recipe's ``prune:``). Plugins are
    imported only when ``allow_plugins``; otherwise only their existence is checked and the
    families they would register are left out of the candidate count (with a warning).
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
    splits = load_splits(recipe.data, recipe.seed)
    if splits.num_classes < 2:
        warnings.append(one_class_warning(recipe))
    if recipe.teacher.checkpoint:
        from pathlib import Path

        if not Path(recipe.teacher.checkpoint).is_file():
            raise HantError(f"teacher checkpoint {recipe.teacher.checkpoint!r} does not exist")
    t = recipe.teacher
    model = create_model(t.model, splits.num_classes, splits.in_chans, t.kwargs, pretrained=False).eval()
    size = recipe.data.image_size
    input_shape = (splits.in_chans, size, size)
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(recipe.seed))
    slots = discover_slots(model, example, recipe.slots.patterns or None)
    prune, counts = None, {}
    if pipeline == "prune":
        prune, counts = _prune_plan(recipe, model, slots, example)
    else:
        counts = {name: len(specs) for name, specs in build_zoo(model, slots, families).items()}
    report = DryRunReport(
        model=t.model,
        parameters=sum(p.numel() for p in model.parameters()),
        input_shape=input_shape,
        data={
            "dataset": recipe.data.dataset,
            "classes": splits.num_classes,
            "train": len(splits.train),
            "val": len(splits.val),
            "test": len(splits.test),
        },
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
