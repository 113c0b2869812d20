"""Data the user supplies (the Python API, or a recipe's ``data.factory``): DataLoaders used as they
are, or Datasets that hant batches; checked against the model's input and hashed for resuming."""
from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .data import make_loader
from .errors import DataError

FINGERPRINT_SAMPLES = 8
"""Samples per split, evenly spaced, whose content the data fingerprint hashes (with each split's length)."""


@dataclass
class UserData:
    """Train, validation and optional test data, each a ``DataLoader`` or a ``Dataset`` of ``(input, label)``
    (a training split may yield inputs alone: only fine-tuning needs its labels). No test split: validation
    doubles as test."""

    train: Any
    val: Any
    test: Any = None

    def split(self, name: str) -> Any:
        return self.val if name == "test" and self.test is None else getattr(self, name)


def user_data(obj: Any) -> UserData:
    """What a data factory returned, as ``UserData``: a ``UserData``, a ``(train, val[, test])`` sequence or a
    mapping with keys ``train``, ``val`` and optionally ``test``."""
    if isinstance(obj, UserData):
        return obj
    if isinstance(obj, Mapping) and {"train", "val"} <= set(obj) and set(obj) <= {"train", "val", "test"}:
        return UserData(obj["train"], obj["val"], obj.get("test"))
    if isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) in (2, 3):
        return UserData(*obj)
    raise DataError(
        f"the data factory returned {type(obj).__name__}; it must return (train, val) or (train, val, test), "
        "or a dict with keys train, val and optionally test"
    )


def as_loader(split: Any, batch_size: int, shuffle: bool, seed: int, workers: int) -> DataLoader:
    """A ``DataLoader`` as given, or one over a ``Dataset`` whose order depends only on ``seed``."""
    if isinstance(split, DataLoader):
        return split
    if isinstance(split, IterableDataset):
        return DataLoader(split, batch_size=batch_size, num_workers=workers)
    if isinstance(split, Dataset) or (hasattr(split, "__getitem__") and hasattr(split, "__len__")):
        return make_loader(split, batch_size, shuffle, seed, workers)
    raise DataError(f"data splits must be DataLoaders or Datasets yielding (input, label), got {type(split).__name__}")


def in_order(loader: DataLoader, batch_size: int) -> DataLoader:
    """The loader's dataset in a fixed order (an iterable dataset: the loader itself)."""
    if isinstance(loader.dataset, IterableDataset):
        return loader
    return DataLoader(loader.dataset, batch_size=batch_size, shuffle=False, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn)


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, labels)`` of a batch: a tensor (no labels), a 1-tuple or an ``(input, label, ...)`` sequence."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def check_split(name: str, loader: DataLoader, input_shape: tuple[int, ...], labels: bool) -> None:
    """One clear error unless the first batch of ``loader`` holds inputs of ``input_shape`` per sample and,
    where ``labels``, one integer class label per input."""
    try:
        batch = next(iter(loader))
    except StopIteration:
        raise DataError(f"the {name} data yields no batch; it is empty") from None
    x, y = split_batch(batch)
    if not isinstance(x, torch.Tensor):
        raise DataError(f"the {name} data yields inputs of type {type(x).__name__}; they must be tensors (add a ToTensor transform)")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"the {name} data yields inputs of shape {tuple(x.shape[1:])} per sample, but the model takes "
            f"{tuple(input_shape)} (example_input's shape without the batch axis); resize or transform the data to match"
        )
    if not labels:
        return
    if y is None:
        raise DataError(f"the {name} data yields inputs without labels; accuracy and fine-tuning need (input, label) batches")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x) or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise DataError(f"the {name} data yields labels of {shape} for {len(x)} inputs; labels must be one integer class per input")


def _hash_value(h: "hashlib._Hash", value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode() + np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (tuple, list)):
        for v in value:
            _hash_value(h, v)
    elif isinstance(value, Mapping):
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _hash_value(h, value[k])
    elif hasattr(value, "tobytes"):  # e.g. a PIL image
        h.update(value.tobytes())
    else:
        h.update(repr(value).encode())


def split_fingerprint(loader: DataLoader) -> str:
    """Hash of a split: its length and batch size, and the content of a few evenly spaced samples (the first
    batch for an iterable dataset), drawn with every random generator seeded so random transforms repeat."""
    h = hashlib.sha256(f"{type(loader.dataset).__qualname__}:{loader.batch_size}".encode())
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            random.seed(0)
            if isinstance(loader.dataset, IterableDataset):
                _hash_value(h, split_batch(next(iter(loader))))
            else:
                n = len(loader.dataset)
                h.update(str(n).encode())
                picks = {round(k * (n - 1) / max(1, FINGERPRINT_SAMPLES - 1)) for k in range(FINGERPRINT_SAMPLES)} if n else set()
                for i in sorted(picks):
                    _hash_value(h, loader.dataset[i])
    finally:
        random.setstate(state)
    return h.hexdigest()[:16]


def count_classes(loader: DataLoader) -> int:
    """Classes of a labelled split: its dataset's ``classes`` where it has them, else the largest label + 1."""
    classes = getattr(loader.dataset, "classes", None)
    if classes is not None:
        return len(classes)
    top = -1
    for batch in loader:
        _, y = split_batch(batch)
        if y is None:
            raise DataError("the val data yields inputs without labels; the number of classes cannot be found")
        top = max(top, int(torch.as_tensor(y).max()))
    return top + 1
