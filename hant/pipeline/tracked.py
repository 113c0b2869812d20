"""Running stages with W&B tracking as the recipe says: what ``hant run`` and ``hant.optimize`` share."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

from ..distributed import is_main
from ..tracking import Tracker
from .context import Context
from .runner import STAGES, Stage, run_stages


def run_tracked_stages(
    ctx: Context, upto: str, force: bool = False, on_event: Callable[[str, str, dict], None] | None = None,
    pipeline: Mapping[str, Stage] = STAGES,
) -> str:
    """Run the stages of ``pipeline`` up to ``upto`` (see :func:`run_stages`) with a W&B run in the
    recipe's mode (rank 0 only); returns the mode the tracker ran in (``off``, ``offline``, ``online``)."""
    recipe, run = ctx.recipe, ctx.run
    w = recipe.wandb
    mode = w.mode if is_main() else "off"
    tracker = Tracker(mode, run.root, recipe.to_dict(), w.project, w.entity, recipe.name, w.group, w.tags)
    try:
        run_stages(ctx, upto, force=force, on_event=on_event, tracker=tracker, pipeline=pipeline)
    finally:
        tracker.finish()
    return tracker.mode
