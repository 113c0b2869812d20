"""Range and choice checks of a built recipe, so a bad value fails when the recipe is loaded
(and by ``--dry-run``) with the key as written, not minutes later inside a stage."""
from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError


def _number(value: Any, key: str, low: float, *, strict: bool = True, high: float | None = None) -> None:
    """``value`` must be finite and above ``low`` (at least ``low`` when not ``strict``), below ``high``."""
    bad = not math.isfinite(value) or (value <= low if strict else value < low) or (high is not None and value >= high)
    if bad:
        bound = f"{'greater than' if strict else 'at least'} {low:g}" + (f" and below {high:g}" if high is not None else "")
        raise ConfigError(f"recipe key {key!r} must be a finite number {bound}, got {value!r}")


def _choice(value: Any, key: str, choices: list) -> None:
    if value not in choices:
        raise ConfigError(f"recipe key {key!r} is {value!r}; choose one of {choices}")


def check_recipe(recipe: Any) -> None:
    """Raise ``ConfigError`` naming the first key whose value is out of range or not a known choice."""
    from .distill.losses import FEATURE_LOSSES
    from .distill.scoring import SCORES
    from .search import BACKENDS
    from .tracking import MODES

    s = recipe.search
    _number(s.budget, "search.budget", 0.0)
    if s.budget_ms is not None:
        _number(s.budget_ms, "search.budget_ms", 0.0)
    _choice(s.backend, "search.backend", list(BACKENDS))
    _number(s.time_limit_s, "search.time_limit_s", 0.0)
    _number(s.verify_rounds, "search.verify_rounds", 1, strict=False)
    _number(s.margin, "search.margin", 0.0, strict=False, high=1.0)
    for section, cfg in (("teacher.train", recipe.teacher.train), ("finetune", recipe.finetune)):
        _number(cfg.epochs, f"{section}.epochs", 0, strict=False)
        _number(cfg.lr, f"{section}.lr", 0.0)
        _number(cfg.warmup_epochs, f"{section}.warmup_epochs", 0, strict=False)
        _number(cfg.ema_decay, f"{section}.ema_decay", 0.0, strict=False, high=1.0)
    _choice(recipe.distill.loss, "distill.loss", sorted(FEATURE_LOSSES))
    _choice(recipe.distill.score, "distill.score", list(SCORES))
    _number(recipe.distill.epochs, "distill.epochs", 0, strict=False)
    _number(recipe.distill.lr, "distill.lr", 0.0)
    _number(recipe.distill.chunk_size, "distill.chunk_size", 1, strict=False)
    _number(recipe.finetune.kd_alpha, "finetune.kd_alpha", 0.0, strict=False, high=1.0 + 1e-12)
    _number(recipe.finetune.kd_temperature, "finetune.kd_temperature", 0.0)
    d = recipe.data
    _number(d.image_size, "data.image_size", 1, strict=False)
    _number(d.batch_size, "data.batch_size", 1, strict=False)
    _number(d.workers, "data.workers", 0, strict=False)
    p = recipe.profile
    _number(p.rel_precision, "profile.rel_precision", 0.0)
    _number(p.time_budget_s, "profile.time_budget_s", 0.0)
    _number(p.calibration_networks, "profile.calibration_networks", 1, strict=False)
    _choice(recipe.wandb.mode, "wandb.mode", list(MODES))
