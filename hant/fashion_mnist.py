"""Fashion-MNIST's four IDX files (each raw or gzipped), read by torchvision's IDX reader and kept
as uint8; Debian's ``dataset-fashion-mnist`` package installs them in :data:`DEFAULT_ROOT`."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from .errors import ConfigError, FileFormatError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
IMAGES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
NEEDED = ", ".join([IMAGES["train"], LABELS["train"], IMAGES["test"], LABELS["test"]])
INSTALL_HINT = f"`apt-get install dataset-fashion-mnist` puts them in {DEFAULT_ROOT}"


class GrayImages(Dataset):
    """uint8 images ``(N, H, W)`` with their labels; each image goes through ``transform`` (given a
    ``(1, H, W)`` uint8 tensor) only when it is read, so the split stays one byte per pixel."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i].unsqueeze(0)), int(self.labels[i])


def idx_file(root: Path, name: str) -> Path:
    """``root/name`` or ``root/name.gz``, whichever exists; ConfigError naming every file needed."""
    for path in (root / name, root / f"{name}.gz"):
        if path.is_file():
            return path
    raise ConfigError(
        f"Fashion-MNIST directory {str(root)!r} has no {name}[.gz]; it needs {NEEDED} (each raw or .gz); {INSTALL_HINT}"
    )


def read_idx(path: Path, labels: bool) -> torch.Tensor:
    """The uint8 tensor of one IDX file (images ``(N, H, W)``, labels ``(N,)``); a .gz is decompressed
    into a temporary directory first (torchvision's reader takes raw files only)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file
    from torchvision.datasets.utils import extract_archive

    reader = read_label_file if labels else read_image_file
    try:
        if path.suffix == ".gz":
            with tempfile.TemporaryDirectory(prefix="hant-idx-") as tmp:
                return reader(str(extract_archive(path, tmp)))
        return reader(str(path))
    except (AssertionError, TypeError, ValueError, RuntimeError, OSError, EOFError) as e:  # torchvision asserts the header
        kind = "label (magic 2049)" if labels else "image (magic 2051)"
        raise FileFormatError(f"{path} is not a uint8 IDX {kind} file: {e or type(e).__name__}") from e


def read_split(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``split`` (``train`` or ``test``) under ``root``; their counts must agree."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"Fashion-MNIST directory {str(root)!r} does not exist; it must hold {NEEDED} (each raw or .gz); {INSTALL_HINT}")
    images = read_idx(idx_file(root, IMAGES[split]), labels=False)
    labels = read_idx(idx_file(root, LABELS[split]), labels=True).long()
    if len(images) != len(labels):
        raise FileFormatError(f"{root}: {IMAGES[split]} holds {len(images)} images but {LABELS[split]} {len(labels)} labels")
    return images, labels


def pixel_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 ``images`` on the [0, 1] scale, from a histogram of the
    256 grey levels (no float copy of the images)."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * levels).sum() / counts.sum()
    var = (counts * (levels - mean) ** 2).sum() / counts.sum()
    return float(mean), float(var.sqrt())
