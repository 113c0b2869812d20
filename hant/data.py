"""Datasets: the embedded handwritten digits, Fashion-MNIST, and ImageFolder directories for real work."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .config import DataConfig
from .errors import ConfigError
from .fashion_mnist import DEFAULT_ROOT as FASHION_MNIST_ROOT
from .fashion_mnist import GrayImages, pixel_mean_std, read_split
from .loaders import preprocessing

DIGITS_SPLIT = (0.6, 0.2, 0.2)
DIGITS_SHIFT = 2
FASHION_VAL_FRACTION = 1 / 12
"""Share of Fashion-MNIST's training images held out for validation: 5,000 of the 60,000."""
FASHION_SHIFT_FRACTION = 1 / 14
"""Random shifts of Fashion-MNIST training batches reach this fraction of the side (2 of 28 pixels)."""


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
    shift: int = 0
    """Pixels by which training batches are randomly shifted (tensor datasets); 0 where the
    dataset's own transforms augment (ImageFolder)."""


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

    return DataSplits(subset(train_idx), subset(val_idx), subset(test_idx), 10, 1, image_size, shift=DIGITS_SHIFT)


def balanced_subset(ids: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` of ``ids`` drawn with ``seed``, each class in its share of ``labels`` (stratified)."""
    from sklearn.model_selection import train_test_split

    if size >= len(ids):
        return ids
    try:
        chosen, _ = train_test_split(ids, train_size=size, stratify=labels, random_state=seed)
    except ValueError as e:  # fewer images than classes
        raise ConfigError(f"data.train_subset {size} is too small for a class-balanced draw: {e}") from None
    return np.sort(chosen)


def gray_transform(image_size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...]):
    """A uint8 grey image ``(1, H, W)`` to float ``(channels, image_size, image_size)``: scaled to
    [0, 1], resized (antialiased), grey copied into RGB when ``channels`` is 3, then normalised."""
    from torchvision.transforms import v2

    steps = [v2.ToDtype(torch.float32, scale=True), v2.Resize((image_size, image_size), antialias=True)]
    if channels == 3:
        steps.append(v2.RGB())
    return v2.Compose([*steps, v2.Normalize(list(mean), list(std))])


def fashion_mnist_splits(
    root: str | Path, image_size: int, seed: int = 0, channels: int = 1,
    train_subset: int | None = None, model_name: str | None = None,
) -> DataSplits:
    """Fashion-MNIST from its IDX files under ``root``: 1/12 of the training images (5,000)
    held out for validation (stratified, seeded), the rest (or a class-balanced ``train_subset``
    of it) for training, and the 10,000 t10k images as test.

    Images stay uint8 and are converted when read (:func:`gray_transform`). With ``channels`` 3
    (an ImageNet-pretrained teacher) they are normalised with ``model_name``'s pretrained mean and
    std (timm's config, as ImageFolder data is); otherwise, or where the model has no such
    config, with the training split's.
    """
    from sklearn.model_selection import train_test_split

    images, labels = read_split(root, "train")
    test_images, test_labels = read_split(root, "test")
    y = labels.numpy()
    train_idx, val_idx = train_test_split(
        np.arange(len(y)), test_size=FASHION_VAL_FRACTION, stratify=y, random_state=seed
    )
    if train_subset is not None:
        train_idx = balanced_subset(train_idx, y[train_idx], train_subset, seed)
    train_t, val_t = torch.as_tensor(train_idx), torch.as_tensor(np.sort(val_idx))
    mean_std = preprocessing(model_name) if channels == 3 and model_name else {}
    if "mean" in mean_std:
        mean, std = mean_std["mean"], mean_std["std"]
    else:
        gray_mean, gray_std = pixel_mean_std(images[train_t])
        mean, std = (gray_mean,) * channels, (gray_std,) * channels
    transform = gray_transform(image_size, channels, mean, std)
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    return DataSplits(
        GrayImages(images[train_t], labels[train_t], transform),
        GrayImages(images[val_t], labels[val_t], transform),
        GrayImages(test_images, test_labels, transform),
        num_classes, channels, image_size, shift=max(1, round(image_size * FASHION_SHIFT_FRACTION)),
    )


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


def load_splits(cfg: DataConfig, seed: int, model_name: str | None = None) -> DataSplits:
    """The splits a recipe names; ``model_name`` (the teacher's timm name) gives the normalisation
    of 3-channel Fashion-MNIST."""
    if cfg.dataset == "fashion_mnist":
        return fashion_mnist_splits(
            cfg.root or FASHION_MNIST_ROOT, cfg.image_size, seed, cfg.channels or 1, cfg.train_subset, model_name
        )
    if cfg.dataset in ("digits", "digits_hard"):
        return digits_splits(cfg.image_size, seed, hard=cfg.dataset == "digits_hard")
    if cfg.dataset == "imagefolder":
        if not cfg.root:
            raise ConfigError("data.dataset is 'imagefolder' but data.root is not set; pass --data PATH or set data.root")
        return imagefolder_splits(cfg.root, cfg.image_size, cfg.augment)
    raise ConfigError(f"unknown dataset {cfg.dataset!r}; use 'digits', 'digits_hard', 'fashion_mnist' or 'imagefolder'")


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
