"""The teacher: built by timm from its name, with pretrained weights or a local checkpoint."""
from __future__ import annotations

import difflib
from pathlib import Path

import torch
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


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights from safetensors, or from a torch file with ``weights_only=True`` (nested
    ``state_dict`` / ``model`` / ``state_dict_ema`` entries are unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors name unsafe globals; say what to do instead
        raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded safely ({e}); save its state_dict as safetensors") from e
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ConfigError(f"checkpoint {str(path)!r} holds no state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def state_dict_misfit(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Why ``state`` cannot load into ``model`` exactly (a tensor of another shape, missing or
    unexpected keys), or None when it fits."""
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        return (
            f"{len(wrong)} tensors differ in shape, e.g. {k!r} is {tuple(state[k].shape)} in the file "
            f"but {tuple(own[k].shape)} in the model"
        )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        return f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
    return None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint into ``model``; mismatched keys are a clear error."""
    state = load_state_dict_file(path)
    problem = state_dict_misfit(model, state)
    if problem:
        raise ConfigError(f"checkpoint {str(path)!r} does not fit the model ({problem}); check num_classes and kwargs")
    model.load_state_dict(state)
