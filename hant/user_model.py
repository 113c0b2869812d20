"""A teacher given as a module (the Python API, or a recipe's ``teacher.factory``): checked, described, hashed."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from .errors import ModelError
from .user_code import portable_reference


def check_forward(model: nn.Module, example_input: torch.Tensor) -> torch.Tensor:
    """The model's output on ``example_input`` (in eval mode, without gradients); one clear error when
    the forward fails or does not return a ``(batch, classes)`` tensor of logits."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        raise ModelError("example_input must be a batch tensor of shape (batch, *input_shape), e.g. torch.randn(2, 3, 224, 224)")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example_input)
    except Exception as e:  # any failure of the user's forward is reported in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(
            f"{type(model).__name__}'s forward fails on example_input of shape {tuple(example_input.shape)}: "
            f"{type(e).__name__}: {first}; pass an input the model accepts"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != example_input.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"{type(model).__name__} returns {shape} on example_input; hant needs a classifier returning (batch, classes) logits")
    return out


def model_fingerprint(model: nn.Module) -> str:
    """Hash of a module's structure (its repr) and of every tensor of its state_dict."""
    h = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def module_description(model: nn.Module, num_classes: int, in_chans: int, factory: str, kwargs: dict) -> dict:
    """How a teacher given as a module is rebuilt (``source: factory``): its architecture is what
    ``factory(**kwargs)`` returns; loading a student so described runs that code, so it needs the caller's
    allowance as plugins do."""
    return {
        "source": "factory",
        "name": type(model).__qualname__,
        "factory": portable_reference(factory),
        "kwargs": dict(kwargs),
        "num_classes": num_classes,
        "in_chans": in_chans,
    }
