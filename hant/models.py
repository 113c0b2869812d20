"""The teacher: built by timm from its name (a local checkpoint loads with :mod:`hant.weights`)."""
from __future__ import annotations

import difflib

from torch import nn

from .errors import ConfigError


def create_model(name: str, num_classes: int, in_chans: int, kwargs: dict | None = None, pretrained: bool = False) -> nn.Module:
    """A timm model by name, with an error that suggests close names when it is unknown."""
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8] or difflib.get_close_matches(name, timm.list_models(), 8, 0.6)
        hint = f"similar names: {close}" if close else "`python -c 'import timm; print(timm.list_models())'` lists them"
        raise ConfigError(f"timm has no model named {name!r}; {hint}")
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **(kwargs or {}))
    except TypeError as e:
        raise ConfigError(f"timm model {name!r} rejected its kwargs {kwargs}: {e}") from e
