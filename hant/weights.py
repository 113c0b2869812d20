"""Weights into networks, one way for every file hant loads: a user's checkpoint (safetensors, or a
torch file read by timm's ``load_state_dict``), the trained teacher, each distilled candidate and a
saved student. A state that does not fit its network exactly is an error naming the file."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .errors import ConfigError, FileFormatError, HantError
from .io import load_tensors


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A user's checkpoint as a state dict: safetensors, or a torch file read with ``weights_only``
    by timm's ``load_state_dict`` (EMA weights first, then ``state_dict`` or ``model`` entries; the
    ``module.`` and ``_orig_mod.`` prefixes of DDP and torch.compile removed by ``clean_state_dict``)."""
    from timm.models import clean_state_dict, load_state_dict

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        return clean_state_dict(load_tensors(path))
    try:
        state = load_state_dict(str(path), use_ema=True, device="cpu", weights_only=True)
    except AttributeError:  # timm found a bare object where a mapping of tensors belongs
        raise ConfigError(f"checkpoint {str(path)!r} holds no state_dict") from None
    except Exception as e:  # pickle errors name unsafe globals; say what to do instead
        raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded safely ({e}); save its state_dict as safetensors") from e
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"checkpoint {str(path)!r} holds no state_dict")
    return state


def state_dict_misfit(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
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


def load_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, fix: str,
    error: type[HantError] = FileFormatError,
) -> nn.Module:
    """Load ``state`` into ``model`` exactly and return ``model``; a misfit raises ``error`` naming
    ``source`` and what to do (``fix``)."""
    problem = state_dict_misfit(model, state)
    if problem:
        raise error(f"{source} does not fit the network ({problem}); {fix}")
    model.load_state_dict(state)
    return model


def load_file(model: nn.Module, path: Path, fix: str) -> nn.Module:
    """Load a safetensors file hant wrote into ``model`` (see :func:`load_state`)."""
    return load_state(model, load_tensors(path), repr(str(path)), fix)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a user's checkpoint (:func:`read_checkpoint`) into ``model``; a misfit is a ConfigError."""
    return load_state(model, read_checkpoint(path), f"checkpoint {str(path)!r}", "check num_classes and kwargs", ConfigError)
