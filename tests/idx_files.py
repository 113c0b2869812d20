"""Tiny Fashion-MNIST stand-ins: IDX files in the real format (big-endian header, magic 2051 for
images and 2049 for labels), raw or gzipped."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
SIDE = 28
CLASSES = 10


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """``array`` (uint8) as an IDX file at ``path``, gzipped when the name ends in .gz."""
    data = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def images_for(labels: np.ndarray, offset: int) -> np.ndarray:
    """One image per label whose first two pixels encode its index (``offset`` + i) in base 256,
    the rest a grey level that grows with the label."""
    images = np.repeat((labels * 20 + 30).astype(np.uint8)[:, None, None], SIDE, 1).repeat(SIDE, 2)
    ids = np.arange(len(labels)) + offset
    images[:, 0, 0], images[:, 0, 1] = ids % 256, ids // 256
    return images


def fake_fashion_mnist(root: Path, train: int = 120, test: int = 20, gz: bool = True) -> Path:
    """The four Fashion-MNIST files under ``root`` with ``train`` and ``test`` images, labels
    cycling through the 10 classes; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, count, offset in (("train", train, 0), ("t10k", test, train)):
        labels = np.arange(count) % CLASSES
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images_for(labels, offset), IMAGE_MAGIC)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", labels, LABEL_MAGIC)
    return root
