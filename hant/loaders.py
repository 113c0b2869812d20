"""Data loaders for ImageFolder-style datasets from timm's loader factory, with the teacher's
pretrained preprocessing (mean, std, crop fraction, interpolation)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def preprocessing(model_name: str) -> dict:
    """Normalisation and evaluation-crop settings of ``model_name``'s pretrained weights
    (timm's defaults where the model has no pretrained config)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None:
        return {}
    out = {"mean": tuple(cfg.mean), "std": tuple(cfg.std), "crop_pct": cfg.crop_pct}
    if cfg.interpolation:
        out["interpolation"] = cfg.interpolation
    return out


def timm_loader(
    dataset: Dataset,
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    augment: bool,
    workers: int,
    distributed: bool,
    model_name: str,
) -> DataLoader:
    """A loader from ``timm.data.create_loader`` that also sets the dataset's transforms: random
    resized crop and flip when ``training and augment``, resize and centre crop otherwise.

    Shuffling and, under torchrun, sharding apply to training only (every rank evaluates the
    whole split). Batches stay on the CPU: the trainers move them.
    """
    from timm.data import create_loader

    return create_loader(
        dataset,
        input_size=(3, image_size, image_size),
        batch_size=batch_size,
        is_training=training,
        no_aug=not augment,
        num_workers=workers,
        distributed=distributed and training,
        use_prefetcher=False,
        device=torch.device("cpu"),
        **preprocessing(model_name),
    )
