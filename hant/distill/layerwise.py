"""Phase 1: every candidate learns to reproduce its slot's teacher output from the teacher's input.

All candidates of a chunk share one teacher forward per batch; each has its own optimizer.
Finished candidates are checkpointed (safetensors plus a small record), so a killed run resumes
without retraining them. A candidate whose loss turns NaN or infinite is marked failed.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import DistillConfig
from ..io import load_tensors, read_json, save_tensors, write_json
from ..ops_zoo import CandidateSpec, build_candidate, get_family
from ..progress import progress
from ..slots import Slot
from .capture import SlotCapture
from .losses import feature_loss

log = logging.getLogger(__name__)


@dataclass
class CandidateRecord:
    """Outcome of distilling one candidate."""

    slot: str
    key: str
    uid: str
    status: str
    """``ok``, ``failed`` (non-finite loss) or ``exact`` (keep: reproduces the teacher by definition)."""
    train_loss: float | None = None
    score: float | None = None
    """Validation feature-map loss (lower is better); None for failed candidates."""
    error: str | None = None


@dataclass
class _Job:
    slot: Slot
    spec: CandidateSpec
    module: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    loss_sum: float = 0.0
    batches: int = 0
    failed: str | None = None


def candidate_seed(seed: int, uid: str) -> int:
    """A per-candidate seed, so initialisation does not depend on training order or chunking."""
    return (seed * 1_000_003 + int(uid[:8], 16)) % (2**31)


def weights_path(weights_dir: Path, spec: CandidateSpec) -> Path:
    return Path(weights_dir) / f"{spec.uid}.safetensors"


def _record_path(weights_dir: Path, spec: CandidateSpec) -> Path:
    return Path(weights_dir) / f"{spec.uid}.json"


def build_trained_candidate(spec: CandidateSpec, teacher_block: nn.Module, weights_dir: Path) -> nn.Module:
    """A candidate module with its distilled weights (keep and parameter-free families need none)."""
    module = build_candidate(spec, teacher_block)
    path = weights_path(weights_dir, spec)
    if get_family(spec.family).trainable:
        module.load_state_dict(load_tensors(path))
    return module


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


def _init_from_first_batch(capture: SlotCapture, jobs: list[_Job], loader: DataLoader) -> None:
    """Let candidates that define ``init_from_batch(x, target)`` initialise from real slot data."""
    hooked = [j for j in jobs if callable(getattr(j.module, "init_from_batch", None))]
    if not hooked:
        return
    x, _ = next(iter(loader))
    io = capture.run(x)
    for job in hooked:
        job.module.init_from_batch(*io[job.slot.name])


def _train_chunk(
    teacher: nn.Module,
    jobs: list[_Job],
    loader: DataLoader,
    cfg: DistillConfig,
    augment: Callable[[torch.Tensor], torch.Tensor] | None,
    desc: str,
) -> None:
    loss_fn = feature_loss(cfg.loss)
    slots = list({j.slot.name: j.slot for j in jobs}.values())
    total_steps = cfg.epochs * len(loader)
    base_lrs = [cfg.lr] * len(jobs)
    for job in jobs:
        job.module.train()
        job.optimizer = torch.optim.Adam(job.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    with SlotCapture(teacher, slots) as capture:
        _init_from_first_batch(capture, jobs, loader)
        for epoch in progress(range(cfg.epochs), desc=desc, unit="epoch"):
            for job in jobs:
                job.loss_sum, job.batches = 0.0, 0
            for x, _ in loader:
                if augment is not None:
                    x = augment(x)
                io = capture.run(x)
                factor = _cosine(step, total_steps)
                for job, lr in zip(jobs, base_lrs):
                    if job.failed:
                        continue
                    x_in, target = io[job.slot.name]
                    loss = loss_fn(job.module(x_in), target)
                    if not torch.isfinite(loss):
                        job.failed = f"loss became {loss.item()} in epoch {epoch}"
                        log.warning("candidate %s of slot %s failed: %s", job.spec.key, job.slot.name, job.failed)
                        continue
                    for group in job.optimizer.param_groups:
                        group["lr"] = lr * factor
                    job.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    job.optimizer.step()
                    job.loss_sum += loss.item()
                    job.batches += 1
                step += 1


@torch.no_grad()
def _recalibrate_norms(teacher: nn.Module, jobs: list[_Job], loader: DataLoader, max_batches: int) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over training batches.

    Momentum-averaged statistics lag the weights of a short schedule; evaluation then sees
    statistics of earlier weights. A no-gradient pass with cumulative averaging fixes that.
    """
    norms = [m for j in jobs if not j.failed for m in j.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    for job in jobs:
        job.module.train()
    slots = list({j.slot.name: j.slot for j in jobs}.values())
    with SlotCapture(teacher, slots) as capture:
        for i, (x, _) in enumerate(loader):
            if i >= max_batches:
                break
            io = capture.run(x)
            for job in jobs:
                if not job.failed:
                    job.module(io[job.slot.name][0])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


@torch.no_grad()
def _score(
    teacher: nn.Module, jobs: list[_Job], loader: DataLoader, cfg: DistillConfig
) -> dict[str, float]:
    """Validation loss of each job, as total squared error over total target energy (nmse) or mean."""
    err = {j.spec.uid: 0.0 for j in jobs}
    energy = {j.spec.uid: 0.0 for j in jobs}
    count = {j.spec.uid: 0 for j in jobs}
    for job in jobs:
        job.module.eval()
    slots = list({j.slot.name: j.slot for j in jobs}.values())
    with SlotCapture(teacher, slots) as capture:
        for x, _ in loader:
            io = capture.run(x)
            for job in jobs:
                x_in, target = io[job.slot.name]
                err[job.spec.uid] += (job.module(x_in) - target).pow(2).sum().item()
                energy[job.spec.uid] += target.pow(2).sum().item()
                count[job.spec.uid] += target.numel()
    if cfg.loss == "nmse":
        return {uid: err[uid] / max(energy[uid], 1e-12) for uid in err}
    return {uid: err[uid] / max(count[uid], 1) for uid in err}


def distill_zoo(
    teacher: nn.Module,
    slots: Sequence[Slot],
    zoo: Mapping[str, list[CandidateSpec]],
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: DistillConfig,
    weights_dir: Path,
    seed: int = 0,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, dict[str, CandidateRecord]]:
    """Distill every trainable candidate of ``zoo``, score all of them on ``val_loader``.

    Returns slot name → candidate key → record. Weights land in ``weights_dir`` as
    ``<uid>.safetensors``; candidates already finished there are not trained again.
    """
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    teacher.eval()
    blocks = {s.name: teacher.get_submodule(s.path) for s in slots}
    records: dict[str, dict[str, CandidateRecord]] = {s.name: {} for s in slots}
    todo: list[tuple[Slot, CandidateSpec]] = []
    for slot in slots:
        for spec in zoo[slot.name]:
            family = get_family(spec.family)
            if spec.family == "keep":
                records[slot.name][spec.key] = CandidateRecord(slot.name, spec.key, spec.uid, "exact", 0.0, 0.0)
            elif family.trainable and not _record_path(weights_dir, spec).is_file():
                todo.append((slot, spec))
    n_chunks = math.ceil(len(todo) / max(1, cfg.chunk_size))
    for c in range(n_chunks):
        chunk = todo[c * cfg.chunk_size : (c + 1) * cfg.chunk_size]
        jobs = []
        for slot, spec in chunk:
            torch.manual_seed(candidate_seed(seed, spec.uid))
            jobs.append(_Job(slot, spec, build_candidate(spec, blocks[slot.name]).requires_grad_(True)))
        _train_chunk(teacher, jobs, train_loader, cfg, augment, desc=f"distill {c + 1}/{n_chunks}")
        _recalibrate_norms(teacher, jobs, train_loader, cfg.bn_recalibration_batches)
        for job in jobs:
            record = CandidateRecord(
                job.slot.name,
                job.spec.key,
                job.spec.uid,
                "failed" if job.failed else "ok",
                None if job.failed else job.loss_sum / max(1, job.batches),
                error=job.failed,
            )
            if not job.failed:
                save_tensors(weights_path(weights_dir, job.spec), job.module.state_dict())
            write_json(_record_path(weights_dir, job.spec), asdict(record))
    # score every non-keep candidate (trained ones from their checkpoints, parameter-free ones as built)
    score_jobs: list[_Job] = []
    for slot in slots:
        for spec in zoo[slot.name]:
            if spec.family == "keep":
                continue
            family = get_family(spec.family)
            if family.trainable:
                record = CandidateRecord(**read_json(_record_path(weights_dir, spec)))
                records[slot.name][spec.key] = record
                if record.status == "failed":
                    continue
                module = build_trained_candidate(spec, blocks[slot.name], weights_dir)
            else:
                records[slot.name][spec.key] = CandidateRecord(slot.name, spec.key, spec.uid, "ok")
                module = build_candidate(spec, blocks[slot.name])
            score_jobs.append(_Job(slot, spec, module))
    for start in progress(range(0, len(score_jobs), cfg.chunk_size), desc="score", unit="chunk"):
        chunk = score_jobs[start : start + cfg.chunk_size]
        scores = _score(teacher, chunk, val_loader, cfg)
        for job in chunk:
            score = scores[job.spec.uid]
            rec = records[job.slot.name][job.spec.key]
            if math.isfinite(score):
                rec.score = score
            else:
                rec.status, rec.error = "failed", f"validation loss is {score}"
    return records
