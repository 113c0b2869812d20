"""The training batches of phase 1, in an order that depends only on the seed and the epoch.

Every chunk of candidates, every rank and every resumed run sees the same batches in the same
order, so a candidate's result does not depend on where or when it was trained.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler

Augment = Callable[[torch.Tensor], torch.Tensor]


def mix_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and Python versions)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class EpochStream:
    """Batches of ``loader``'s dataset for epoch ``e``, shuffled (if ``loader`` shuffles) by ``(seed, e)``.

    Only the loader's dataset, batch size, workers, collate function and ``drop_last`` are used,
    and whether it shuffles; its generator and sampler are not (nor a ``DistributedSampler``'s
    share: every rank sees every batch). Torch's global RNG is seeded per batch while the batch
    is loaded and augmented, so random transforms (in the dataset or ``augment``) repeat exactly.
    """

    def __init__(self, loader: DataLoader, seed: int, augment: Augment | None = None, device: torch.device | None = None):
        self.loader = loader
        self.seed = seed
        self.augment = augment
        self.device = device
        self.shuffle = isinstance(loader.sampler, RandomSampler) or bool(getattr(loader.sampler, "shuffle", False))
        self._length = len(self._loader(0))

    def __len__(self) -> int:
        return self._length

    def _loader(self, epoch: int) -> DataLoader:
        src = self.loader
        return DataLoader(
            src.dataset,
            batch_size=src.batch_size,
            shuffle=self.shuffle,
            num_workers=src.num_workers,
            collate_fn=src.collate_fn,
            drop_last=src.drop_last,
            pin_memory=src.pin_memory,
            generator=torch.Generator().manual_seed(mix_seed("order", self.seed, epoch)),
        )

    def epoch(self, epoch: int, augment: bool = True) -> Iterator[torch.Tensor]:
        """The inputs of every batch of ``epoch`` (labels are not needed), on ``device``."""
        batches = iter(self._loader(epoch))
        for b in range(len(self)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(mix_seed("batch", self.seed, epoch, b))
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if augment and self.augment is not None:
                    x = self.augment(x)
            yield x.to(self.device, non_blocking=True) if self.device is not None else x
