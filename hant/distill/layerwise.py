"""Phase 1: every candidate learns to reproduce its slot's teacher output from the teacher's input.

All candidates of a chunk share one teacher forward per batch; each has its own optimizer.
Chunks respect a count and a memory budget. After every epoch each candidate's full training
state is checkpointed, and the data order depends only on (seed, epoch), so a run killed at any
moment resumes with the same results; finished candidates are never retrained. A candidate
whose loss turns NaN or infinite is marked failed and the others go on. Under torchrun the
candidates are sharded across ranks and every rank returns every record.
"""
from __future__ import annotations

import copy
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, ContextManager, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..amp import autocast, autocast_dtype
from ..config import DistillConfig
from ..distributed import barrier
from ..errors import ConfigError
from ..io import check_tensors, hash_obj, read_json, save_tensors, write_json
from ..ops_zoo import CandidateSpec, build_candidate, get_family
from ..progress import progress
from ..slots import Slot
from ..tracking import log_slot_losses
from ..weights import load_file
from .capture import SlotCapture
from .checkpoint import Progress, load_progress, progress_path, record_path, save_progress, weights_path
from .chunk import ChunkTrainer, DistillError, Job, make_optimizer, recalibrate_norms
from .losses import feature_loss
from .memory import captured_bytes, default_budget, footprint, pack_chunks
from .scoring import SCORES, Scores, score_jobs, teacher_accuracy
from .sharding import gather_all, local_device, shard
from .stream import Augment, EpochStream
from .swap import SwapIn

log = logging.getLogger(__name__)

Numerics = Callable[[Slot, nn.Module], nn.Module]
"""Turns a trained candidate for a slot into the module that computes it as deployed in another
precision (e.g. quantized and compiled by the target runtime), so it is scored on its real outputs."""

__all__ = ["CandidateRecord", "Numerics", "DistillError", "build_trained_candidate", "candidate_seed", "distill_device",
           "distill_zoo", "search_score", "weights_path"]


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
    """What the search minimises, as ``DistillConfig.score`` says (:func:`search_score`); None for
    failed candidates."""
    error: str | None = None
    feature_loss: float | None = None
    """Distillation loss on the validation batches."""
    swap_kl: float | None = None
    """Mean KL divergence from the teacher's logits with only this slot replaced (validation)."""
    swap_accuracy: float | None = None
    """Top-1 accuracy (percent) of the teacher with only this slot replaced (validation)."""

    @classmethod
    def from_dict(cls, d: Mapping) -> "CandidateRecord":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def candidate_seed(seed: int, uid: str) -> int:
    """A per-candidate seed, so initialisation does not depend on training order or chunking."""
    return (seed * 1_000_003 + int(uid[:8], 16)) % (2**31)


def build_trained_candidate(slot: str, spec: CandidateSpec, teacher_block: nn.Module, weights_dir: Path) -> nn.Module:
    """``spec`` with the weights phase 1 distilled for ``slot`` (keep and parameter-free families need none)."""
    module = build_candidate(spec, teacher_block)
    if get_family(spec.family).trainable:
        load_file(module, weights_path(weights_dir, slot, spec), "delete it and run the distill stage again")
    return module


def _training_key(cfg: DistillConfig, seed: int) -> str:
    """Hash of the settings a trained candidate depends on; weights made under others are retrained."""
    keys = ("epochs", "lr", "weight_decay", "loss", "bn_recalibration_batches", "amp")
    return hash_obj({"seed": seed, **{k: getattr(cfg, k) for k in keys}})


def _check(cfg: DistillConfig) -> None:
    feature_loss(cfg.loss)
    if cfg.score not in SCORES:
        raise ConfigError(f"unknown distill.score {cfg.score!r}; choose one of {list(SCORES)}")


def distill_device(name: str) -> torch.device:
    """The device phase 1 runs on for `distill.device` (``auto``: this process's GPU, else the CPU)."""
    if name == "auto" or (name == "cuda" and torch.cuda.is_available()):
        return local_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"distill.device is {name!r} but no CUDA device is visible; set it to 'auto' or 'cpu'")
    return device


def _autocast(device: torch.device, cfg: DistillConfig) -> Callable[[], ContextManager] | None:
    """Autocast for training on ``device`` as ``cfg.amp`` says (None: float32); no loss scaling here,
    so a GPU without bfloat16 trains in float32."""
    dtype = autocast_dtype(device, cfg.amp, float16=False)
    return None if dtype is None else (lambda: autocast(device, dtype))


def _finished(weights_dir: Path, slot: str, spec: CandidateSpec, key: str) -> bool:
    path = record_path(weights_dir, slot, spec)
    record = read_json(path) if path.is_file() else {}
    if not record or record.get("trained_with", key) != key:
        return False
    return record.get("status") == "failed" or check_tensors(weights_path(weights_dir, slot, spec)) is None


def _built(spec: CandidateSpec, block: nn.Module, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(candidate_seed(seed, spec.uid))
        return build_candidate(spec, block).requires_grad_(True)


def _new_job(slot: Slot, spec: CandidateSpec, block: nn.Module, cfg: DistillConfig, seed: int,
             weights_dir: Path, device: torch.device, key: str) -> Job:
    """A freshly initialised candidate, or the one its epoch checkpoint holds."""
    module = _built(spec, block, seed).to(device)
    job = Job(slot, spec, module, make_optimizer(module, cfg))
    path = progress_path(weights_dir, slot.name, spec)
    state = load_progress(path, module, job.optimizer, key) if path.is_file() else None
    if state is not None:
        job.start_epoch, job.loss_sum, job.batches = state.epoch, state.loss_sum, state.batches
    return job


def train_chunk(
    teacher: nn.Module,
    jobs: list[Job],
    stream: EpochStream,
    cfg: DistillConfig,
    weights_dir: Path,
    key: str,
    desc: str,
    autocast: Callable[[], ContextManager] | None = None,
) -> None:
    """Train ``jobs`` from their checkpoints to the last epoch, checkpointing after every epoch."""
    by_start: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        by_start[job.start_epoch].append(job)
    for start, group in sorted(by_start.items()):
        if start > 0:
            log.info("%s: %d candidates resume after epoch %d", desc, len(group), start)
        with ChunkTrainer(teacher, group, cfg, len(stream), autocast) as trainer:
            if start == 0:
                trainer.init_from_batch(next(iter(stream.epoch(0))))
            for epoch in range(start, cfg.epochs):
                for job in group:
                    job.loss_sum, job.batches = 0.0, 0
                batches = progress(stream.epoch(epoch), desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
                                   total=len(stream), unit="batch")
                for b, x in enumerate(batches):
                    trainer.step(x, epoch * len(stream) + b)
                for job in group:
                    if not job.failed:
                        save_progress(progress_path(weights_dir, job.slot.name, job.spec), job.module, job.optimizer,
                                      Progress(epoch + 1, job.loss_sum, job.batches, key))
                log_slot_losses(epoch, [(job.slot.name, job.epoch_loss) for job in group])


def _finish(jobs: Sequence[Job], weights_dir: Path, key: str) -> None:
    """Write each job's weights and record, then drop its epoch checkpoint."""
    for job in jobs:
        record = CandidateRecord(
            job.slot.name, job.spec.key, job.spec.uid, "failed" if job.failed else "ok",
            job.epoch_loss, error=job.failed,
        )
        if not job.failed:
            save_tensors(weights_path(weights_dir, job.slot.name, job.spec), job.module.state_dict())
        write_json(record_path(weights_dir, job.slot.name, job.spec), {**asdict(record), "trained_with": key})
        progress_path(weights_dir, job.slot.name, job.spec).unlink(missing_ok=True)


def _train(
    teacher: nn.Module,
    blocks: Mapping[str, nn.Module],
    todo: list[tuple[Slot, CandidateSpec]],
    stream: EpochStream,
    cfg: DistillConfig,
    weights_dir: Path,
    seed: int,
    device: torch.device,
) -> None:
    """Train this rank's candidates chunk by chunk."""
    key = _training_key(cfg, seed)
    batch_size = stream.loader.batch_size or 1
    budget = int(cfg.memory_budget_mb * 2**20) if cfg.memory_budget_mb is not None else default_budget(device)
    footprints = None
    if budget is not None:
        footprints = [footprint(_built(spec, blocks[slot.name], seed), slot.in_shape, batch_size) for slot, spec in todo]
    slot_bytes = {slot.name: captured_bytes(slot.in_shape, slot.out_shape, batch_size) for slot, _ in todo}
    chunks = pack_chunks(todo, footprints, [slot.name for slot, _ in todo], slot_bytes, cfg.chunk_size, budget)
    log.info("distilling %d candidates in %d chunks", len(todo), len(chunks))
    autocast = _autocast(device, cfg)
    for c, chunk in enumerate(progress(chunks, desc="distill", unit="chunk")):
        jobs = [_new_job(slot, spec, blocks[slot.name], cfg, seed, weights_dir, device, key) for slot, spec in chunk]
        train_chunk(teacher, jobs, stream, cfg, weights_dir, key, f"chunk {c + 1}/{len(chunks)}", autocast)
        recalibrate_norms(teacher, jobs, stream, cfg.epochs, cfg.bn_recalibration_batches)
        _finish(jobs, weights_dir, key)


def _apply(record: CandidateRecord, scores: Scores, cfg: DistillConfig) -> None:
    """Store a candidate's validation scores; a non-finite one fails it."""
    record.feature_loss, record.swap_kl, record.swap_accuracy = scores.feature_loss, scores.swap_kl, scores.swap_accuracy
    for name, value in (("validation loss", scores.feature_loss), ("swap-in KL divergence", scores.swap_kl)):
        if value is not None and not math.isfinite(value):
            record.status, record.error = "failed", f"{name} is {value}"
    if record.status == "failed":
        record.feature_loss = record.feature_loss if math.isfinite(record.feature_loss) else None
        record.swap_kl = record.swap_kl if record.swap_kl is not None and math.isfinite(record.swap_kl) else None
        return
    if cfg.score != "nmse" and (record.swap_kl is None or record.swap_accuracy is None):
        raise DistillError(
            f"slot {record.slot} gets no swap-in score because its teacher cannot be re-run with the slot "
            "swapped; set distill.score to nmse"
        )
    record.score = search_score(record, cfg.score)


def search_score(record: CandidateRecord, score: str) -> float:
    """The value of ``record`` that the search minimises under ``distill.score``: the distillation
    loss (``nmse``), the swap-in KL divergence (``swap_kl``) or the swap-in error rate in percent
    (``swap_error``: 100 minus the swap-in accuracy)."""
    if score == "nmse":
        return record.feature_loss
    if score == "swap_kl":
        return record.swap_kl
    return 100.0 - record.swap_accuracy


def _score(
    teacher: nn.Module,
    slots: Sequence[Slot],
    jobs: list[tuple[Slot, CandidateSpec]],
    blocks: Mapping[str, nn.Module],
    loader: DataLoader,
    cfg: DistillConfig,
    weights_dir: Path,
    device: torch.device,
    numerics: Numerics | None = None,
) -> dict[tuple[str, str], Scores]:
    """Scores of this rank's share of ``jobs`` ((slot, uid) → scores), each candidate computed by ``numerics``
    where given."""
    if not jobs:
        return {}
    x, _ = next(iter(loader))
    x = x.to(device)
    swap = SwapIn(teacher, slots, x)
    with SlotCapture(teacher, slots, extra=swap.points) as capture:
        swap.calibrate(capture, x)
    scores: dict[str, Scores] = {}
    for start in progress(range(0, len(jobs), cfg.chunk_size), desc="score", unit="chunk"):
        chunk = []
        for slot, spec in jobs[start : start + cfg.chunk_size]:
            module = build_trained_candidate(slot.name, spec, blocks[slot.name], weights_dir).to(device)
            chunk.append(Job(slot, spec, numerics(slot, module) if numerics is not None else module))
        scores.update(score_jobs(teacher, chunk, loader, cfg.loss, swap, device))
    return scores


def distill_zoo(
    teacher: nn.Module,
    slots: Sequence[Slot],
    zoo: Mapping[str, list[CandidateSpec]],
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: DistillConfig,
    weights_dir: Path,
    seed: int = 0,
    augment: Augment | None = None,
    numerics: Mapping[str, Numerics] | None = None,
) -> dict[str, dict[str, CandidateRecord]]:
    """Distill every trainable candidate of ``zoo``, score all of them on ``val_loader``.

    ``numerics`` (name → :data:`Numerics`) scores every candidate that did not fail once more per
    entry, the teacher's own block included, as computed there; those records are keyed
    ``key@name`` (uid ``uid@name``).

    Returns slot name → candidate key → record. Weights land in ``weights_dir`` as
    ``<slot>--<uid>.safetensors``; candidates finished there under the same settings are not trained
    again, and unfinished ones continue from their last epoch checkpoint. Training batches come
    from ``train_loader``'s dataset in an order set by ``seed`` and the epoch; ``augment`` may draw
    from torch's global RNG, which is seeded per batch. Under torch.distributed, each rank trains
    and scores its share and every rank returns all records.
    """
    _check(cfg)
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    device = distill_device(cfg.device)
    teacher.eval()
    blocks = {s.name: teacher.get_submodule(s.path) for s in slots}
    on_device = teacher if next(teacher.parameters()).device == device else copy.deepcopy(teacher).to(device).eval()
    key = _training_key(cfg, seed)

    todo = [
        (slot, spec)
        for slot in slots
        for spec in zoo[slot.name]
        if spec.family != "keep" and get_family(spec.family).trainable and not _finished(weights_dir, slot.name, spec, key)
    ]
    barrier()
    mine = shard(todo, key=_job_key)
    if mine:
        stream = EpochStream(train_loader, seed, augment, device)
        _train(on_device, blocks, mine, stream, cfg, weights_dir, seed, device)
    barrier()

    records: dict[str, dict[str, CandidateRecord]] = {s.name: {} for s in slots}
    to_score: list[tuple[Slot, CandidateSpec]] = []
    for slot in slots:
        for spec in zoo[slot.name]:
            if spec.family == "keep":
                records[slot.name][spec.key] = CandidateRecord(slot.name, spec.key, spec.uid, "exact", 0.0, 0.0)
                continue
            if get_family(spec.family).trainable:
                record = CandidateRecord.from_dict(read_json(record_path(weights_dir, slot.name, spec)))
            else:
                record = CandidateRecord(slot.name, spec.key, spec.uid, "ok")
            records[slot.name][spec.key] = record
            if record.status != "failed":
                to_score.append((slot, spec))
    local = _score(on_device, slots, shard(to_score, key=_job_key), blocks,
                   val_loader, cfg, weights_dir, device)
    scores = dict(gather_all(sorted(local.items())))
    accuracy = teacher_accuracy(on_device, val_loader, device)
    for slot in slots:
        for record in records[slot.name].values():
            if record.status == "exact":
                record.feature_loss, record.swap_kl, record.swap_accuracy = 0.0, 0.0, accuracy
                record.score = search_score(record, cfg.score)
            elif (slot.name, record.uid) in scores:
                _apply(record, scores[slot.name, record.uid], cfg)
    for name, fn in (numerics or {}).items():
        ok = [(slot, spec) for slot, spec in _all_jobs(slots, zoo) if records[slot.name][spec.key].status != "failed"]
        local = _score(on_device, slots, shard(ok, key=_job_key), blocks, val_loader, cfg,
                       weights_dir, device, numerics=fn)
        varied = dict(gather_all(sorted(local.items())))
        for slot, spec in ok:
            record = CandidateRecord(slot.name, f"{spec.key}@{name}", f"{spec.uid}@{name}", "ok")
            _apply(record, varied[slot.name, spec.uid], cfg)
            records[slot.name][record.key] = record
    return records


def _job_key(job: tuple[Slot, CandidateSpec]) -> str:
    """What shards a (slot, candidate) pair across ranks."""
    slot, spec = job
    return f"{slot.name}/{spec.uid}"


def _all_jobs(slots: Sequence[Slot], zoo: Mapping[str, list[CandidateSpec]]) -> list[tuple[Slot, CandidateSpec]]:
    return [(slot, spec) for slot in slots for spec in zoo[slot.name]]
