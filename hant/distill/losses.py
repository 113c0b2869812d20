"""Feature-map losses of layer-wise distillation."""
from __future__ import annotations

from typing import Callable, Literal

import torch

from ..errors import ConfigError


def nmse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error normalised by the target's mean energy, so slots of any scale compare."""
    return (output - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain mean squared error."""
    return (output - target).pow(2).mean()


FeatureLoss = Literal["nmse", "mse"]
FEATURE_LOSSES: dict[FeatureLoss, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"nmse": nmse, "mse": mse}


def feature_loss(name: str):
    """The feature-map loss called ``name``."""
    try:
        return FEATURE_LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown distillation loss {name!r}; choose one of {sorted(FEATURE_LOSSES)}") from None
