"""Weights & Biases tracking of a run: config, each stage's numbers, the tables and plots, and
phase 1's per-slot losses (logged to the run a :class:`Tracker` started, where there is one).

Mode ``off`` does nothing; ``offline`` writes a local run under ``<run dir>/wandb`` that
``wandb sync`` can upload later; ``online`` streams to the server; ``auto`` is online when
credentials are configured (``WANDB_API_KEY`` or a netrc entry) and offline otherwise.
"""
from __future__ import annotations

import logging
import math
import netrc
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal, get_args

from .errors import ConfigError

log = logging.getLogger(__name__)

WandbMode = Literal["auto", "off", "offline", "online"]
MODES: tuple[str, ...] = get_args(WandbMode)


def has_credentials() -> bool:
    """Whether a W&B API key is configured for this user."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """``off``, ``offline`` or ``online`` for a requested mode (``auto`` decided by credentials)."""
    if mode not in MODES:
        raise ConfigError(f"unknown W&B mode {mode!r}; choose one of {list(MODES)}")
    if mode == "auto":
        return "online" if has_credentials() else "offline"
    return mode


def _numbers(prefix: str, values: dict) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if isinstance(v, bool):
            out[f"{prefix}/{k}"] = int(v)
        elif isinstance(v, (int, float)):
            out[f"{prefix}/{k}"] = v
        elif isinstance(v, dict):
            out.update(_numbers(f"{prefix}/{k}", v))
    return out


class Tracker:
    """One W&B run for one hant run; every method is a no-op in mode ``off``."""

    def __init__(
        self,
        mode: str,
        run_dir: Path,
        config: dict,
        project: str = "hant",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
    ):
        self.mode = resolve_mode(mode)
        self.run = None
        if self.mode == "off":
            return
        import wandb

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            mode=self.mode,
            dir=str(run_dir),
            project=project,
            entity=entity,
            name=name,
            group=group,
            tags=tags,
            config=config,
            reinit="finish_previous",
        )
        log.info("W&B run %s (%s) in %s", self.run.id, self.mode, run_dir)

    def log_stage(self, stage: str, summary: dict) -> None:
        """Log a finished stage's numeric results under ``<stage>/``."""
        if self.run is not None:
            self.run.log(_numbers(stage, summary))

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Log a table (the latency table, the selection)."""
        if self.run is not None:
            import wandb

            self.run.log({name: wandb.Table(columns=columns, data=rows)})

    def log_image(self, name: str, path: Path) -> None:
        """Log a PNG (the Pareto plot)."""
        if self.run is not None and Path(path).is_file():
            import wandb

            self.run.log({name: wandb.Image(str(path))})

    def set_summary(self, values: dict) -> None:
        """Set the run's headline numbers (flattened with ``/``)."""
        if self.run is not None:
            for k, v in _numbers("result", values).items():
                self.run.summary[k] = v

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def active_run():
    """The active ``wandb`` run (the one a :class:`Tracker` started), or None; wandb is not imported."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def slot_loss_metrics(losses: Iterable[tuple[str, float | None]]) -> dict[str, float]:
    """``distill/<slot>/loss_mean``, ``loss_min`` and ``failed`` from (slot, epoch loss or None if failed)."""
    by_slot: dict[str, list[float]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for slot, loss in losses:
        if loss is None or not math.isfinite(loss):
            failed[slot] += 1
        else:
            by_slot[slot].append(loss)
    metrics: dict[str, float] = {}
    for slot in sorted(set(by_slot) | set(failed)):
        values = by_slot.get(slot, [])
        if values:
            metrics[f"distill/{slot}/loss_mean"] = sum(values) / len(values)
            metrics[f"distill/{slot}/loss_min"] = min(values)
        metrics[f"distill/{slot}/failed"] = failed.get(slot, 0)
    return metrics


def log_slot_losses(epoch: int, losses: Iterable[tuple[str, float | None]]) -> bool:
    """Log one epoch's per-slot losses to the active W&B run; returns whether a run took them."""
    run = active_run()
    if run is None:
        return False
    run.log({"distill/epoch": epoch, **slot_loss_metrics(losses)})
    return True
