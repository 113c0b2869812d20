"""Per-candidate files of phase 1: the final weights and record, and the epoch checkpoint.

An epoch checkpoint holds everything a candidate's training state consists of: its weights and
buffers, its Adam moments and step counts, the number of finished epochs and the running loss
of the last one. Together with a data order that depends only on (seed, epoch), that is enough
for a resumed run to continue exactly as an uninterrupted one. Every file is written atomically.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..io import load_tensors, save_tensors
from ..ops_zoo import CandidateSpec

_MODEL, _OPTIM, _META = "model.", "optim.", "meta."


def candidate_stem(slot: str, spec: CandidateSpec) -> str:
    """The file name stem of ``spec`` trained for ``slot``.

    A candidate's uid names its operation and shapes only, so structurally identical slots (two
    blocks of one stage) share it; their trained weights differ, because each one learns its own
    teacher block, so every per-candidate file is named by slot and uid together.
    """
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', slot)}--{spec.uid}"


def weights_path(weights_dir: Path, slot: str, spec: CandidateSpec) -> Path:
    """Where a finished candidate's weights live."""
    return Path(weights_dir) / f"{candidate_stem(slot, spec)}.safetensors"


def record_path(weights_dir: Path, slot: str, spec: CandidateSpec) -> Path:
    """Where a finished candidate's record (status, training loss) lives."""
    return Path(weights_dir) / f"{candidate_stem(slot, spec)}.json"


def progress_path(weights_dir: Path, slot: str, spec: CandidateSpec) -> Path:
    """Where an unfinished candidate's last epoch checkpoint lives."""
    return Path(weights_dir) / "progress" / f"{candidate_stem(slot, spec)}.safetensors"


@dataclass
class Progress:
    """Counters restored with a checkpoint."""

    epoch: int
    """Epochs finished."""
    loss_sum: float
    """Sum of the training losses of the last finished epoch."""
    batches: int
    """Batches in that sum."""
    key: str = ""
    """Hash of the settings the candidate trains under; a checkpoint made under others is ignored."""


def save_progress(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress) -> None:
    """Write a candidate's epoch checkpoint (atomically)."""
    tensors = {_MODEL + k: v for k, v in module.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"{_OPTIM}{index}.{name}"] = torch.as_tensor(value)
    tensors[_META + "epoch"] = torch.tensor(progress.epoch, dtype=torch.int64)
    tensors[_META + "loss_sum"] = torch.tensor(progress.loss_sum, dtype=torch.float64)
    tensors[_META + "batches"] = torch.tensor(progress.batches, dtype=torch.int64)
    tensors[_META + "key"] = torch.tensor(list(progress.key.encode()), dtype=torch.uint8)
    save_tensors(path, tensors)


def load_progress(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, key: str) -> Progress | None:
    """Restore a candidate's weights and optimizer state from its epoch checkpoint.

    Returns None, touching nothing, when the checkpoint was made under settings other than ``key``.
    """
    tensors = load_tensors(path)
    if bytes(tensors.get(_META + "key", torch.zeros(0, dtype=torch.uint8)).tolist()).decode() != key:
        return None
    module.load_state_dict({k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for stored, value in tensors.items():
        if stored.startswith(_OPTIM):
            index, name = stored[len(_OPTIM):].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return Progress(
        int(tensors[_META + "epoch"]), float(tensors[_META + "loss_sum"]), int(tensors[_META + "batches"]), key
    )
