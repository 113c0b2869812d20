"""Datasets: the embedded handwritten digits, and ImageFolder directories for real work."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .config import DataConfig
from .errors import ConfigError

DIGITS_SPLIT = (0.6, 0.2, 0.2)


@dataclass
class DataSplits:
    """Train, validation and test datasets with what a model needs to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    image_size: int
    test_split: str = "test"
    """What ``test`` holds: ``test``, a split no stage selects on, or ``val`` (an ImageFolder without
    ``test/``), the split that chose the best epoch; accuracies on it are then called val."""


HARD_ROTATION_DEG = 20.0
HARD_SCALE = (0.8, 1.2)
HARD_NOISE_STD = 0.8


def distort(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Each image rotated by up to ±20°, scaled by 0.8–1.2 and given Gaussian pixel noise (std 0.8
    of the [0, 1] range), all drawn once from ``seed``: a fixed, harder version of a dataset."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * HARD_ROTATION_DEG * torch.pi / 180
    scale = HARD_SCALE[0] + torch.rand(n, generator=g) * (HARD_SCALE[1] - HARD_SCALE[0])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    return warped + torch.randn(x.shape, generator=g) * HARD_NOISE_STD


def digits_splits(image_size: int = 32, seed: int = 0, hard: bool = False) -> DataSplits:
    """scikit-learn's 1,797 handwritten 8×8 digits, upsampled, in a fixed stratified 60/20/20 split.

    Pixels are scaled to [0, 1] and standardised with the training split's mean and deviation.
    ``hard`` (dataset ``digits_hard``) first rotates, scales and adds noise to every image (see
    :func:`distort`), so that accelerated networks differ in accuracy.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    if hard:
        x = distort(x, seed)
    y = torch.tensor(digits.target, dtype=torch.long)
    idx = np.arange(len(y))
    train_frac, val_frac, test_frac = DIGITS_SPLIT
    train_idx, rest = train_test_split(idx, train_size=train_frac, stratify=y.numpy(), random_state=seed)
    val_idx, test_idx = train_test_split(
        rest, test_size=test_frac / (val_frac + test_frac), stratify=y.numpy()[rest], random_state=seed
    )
    mean, std = x[train_idx].mean(), x[train_idx].std()
    x = (x - mean) / std

    def subset(ids: np.ndarray) -> TensorDataset:
        ids_t = torch.as_tensor(ids)
        return TensorDataset(x[ids_t], y[ids_t])

    return DataSplits(subset(train_idx), subset(val_idx), subset(test_idx), 10, 1, image_size)


def digits_images(image_size: int, n: int, channels: int = 1) -> np.ndarray:
    """The first ``n`` training images of :func:`digits_splits` at ``image_size`` px, standardised as
    there, the one channel repeated into ``channels``: a float32 array ``[n, channels, size, size]`` of
    real images, for calibrating the int8 quantization of networks made for other data where that data
    is not at hand (a latency does not depend on the scales the images give)."""
    if n < 1 or channels < 1:
        raise ConfigError(f"digits_images needs at least one image and one channel, not n={n}, channels={channels}")
    train = digits_splits(image_size).train
    x = torch.stack([train[i][0] for i in range(min(n, len(train)))])
    return x.expand(-1, channels, -1, -1).contiguous().numpy()


def imagefolder_splits(root: str | Path, image_size: int, augment: bool) -> DataSplits:
    """Class directories under ``root/train``, ``root/val`` and, if present, ``root/test`` (else the
    validation split doubles as test), read by timm's dataset factory with timm's transforms
    (random-resized crop and flip when ``augment``; resize and centre crop for evaluation); without
    ``test/`` the splits say so (``test_split`` is ``val``)."""
    from timm.data import create_dataset, create_transform

    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ConfigError(f"data root {str(root)!r} has no {split}/ directory of class folders")

    def split_dataset(split: str, training: bool):
        dataset = create_dataset("", root=str(root), split=split, is_training=training)
        dataset.transform = create_transform(image_size, is_training=training and augment)
        return dataset

    train = split_dataset("train", True)
    val = split_dataset("val", False)
    has_test = (root / "test").is_dir()
    test = split_dataset("test", False) if has_test else val
    classes = train.reader.class_to_idx
    if val.reader.class_to_idx != classes:
        raise ConfigError(f"the class folders of {root}/val differ from those of {root}/train")
    return DataSplits(train, val, test, len(classes), 3, image_size, "test" if has_test else "val")


def load_splits(cfg: DataConfig, seed: int) -> DataSplits:
    """The splits a recipe names."""
    if cfg.dataset in ("digits", "digits_hard"):
        return digits_splits(cfg.image_size, seed, hard=cfg.dataset == "digits_hard")
    if cfg.dataset == "imagefolder":
        if not cfg.root:
            raise ConfigError("data.dataset is 'imagefolder' but data.root is not set; pass --data PATH or set data.root")
        return imagefolder_splits(cfg.root, cfg.image_size, cfg.augment)
    raise ConfigError(f"unknown dataset {cfg.dataset!r}; use 'digits', 'digits_hard' or 'imagefolder'")


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding): cheap tensor augmentation."""
    n = x.shape[0]
    padded = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int = 0) -> DataLoader:
    """A DataLoader whose order depends only on ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=workers)
