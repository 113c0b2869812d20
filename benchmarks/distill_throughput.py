"""Phase-1 throughput: how close training a chunk of candidates together comes to its own compute.

For each measured batch, interleaved so that both see the same machine load:

* phase 1: one ``ChunkTrainer.step`` (teacher forward with capture hooks, then every candidate's
  forward, loss, backward and Adam step), the real code path;
* alone: a plain no-grad teacher forward, plus each candidate's forward, loss, backward and
  Adam step timed one by one on its captured slot tensors.

``overhead_ratio`` is median(phase 1) / median(alone sum); 1.0 means phase 1 costs nothing beyond
one teacher forward and the candidates' own work. ``end_to_end_ratio`` also counts what happens
per epoch (data loading, epoch checkpoints of every candidate), over one epoch.
The last line printed is a JSON object with the numbers and the setting.

With ``--amp`` it instead compares phase 1 in float32 with phase 1 under bfloat16 autocast, on the
embedded digits (real images, upsampled to ``--image-size``) and a teacher whose BatchNorm
statistics are set on them: ``bf16_speedup`` is median(float32 step) / median(bfloat16 step), the
two chunks stepped alternately on the same batches; then every candidate is distilled and scored
by ``distill_zoo`` once per precision (``--amp-epochs``), and ``spearman`` / ``kendall`` (per slot,
averaged; ``*_pooled`` over all candidates) say how well the bfloat16 scores rank candidates as
the float32 ones do. The CPU's ISA features are printed with the setting.

    .venv/bin/python benchmarks/distill_throughput.py [--threads 1] [--image-size 64] [--batch 16] [--amp]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import ContextManager

import torch
from torch.utils.data import DataLoader, TensorDataset

from hant.amp import autocast, isa_features
from hant.config import DistillConfig
from hant.data import digits_splits, make_loader
from hant.distill import layerwise
from hant.distill.capture import SlotCapture
from hant.distill.chunk import ChunkTrainer, Job, make_optimizer
from hant.distill.losses import feature_loss
from hant.distill.stream import EpochStream
from hant.ops_zoo import CandidateSpec, build_candidate, build_zoo, get_family
from hant.slots import discover_slots

FAMILIES = {
    "pruned": {"widths": [0.25, 0.5, 0.75]},
    "dwsep": {"kernels": [3, 5], "acts": ["relu"]},
    "mbconv": {"kernels": [3, 5], "expansions": [2, 4, 6], "se": [False], "acts": ["relu"]},
}
SLOTS = "blocks.1.1,blocks.2.1,blocks.3.1,blocks.4.1"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _jobs(teacher: torch.nn.Module, slots: list, zoo: dict[str, list[CandidateSpec]], cfg: DistillConfig,
          device: torch.device) -> list[Job]:
    """A fresh job for every trainable candidate of ``zoo`` (initialised from torch's global RNG)."""
    jobs = []
    for slot in slots:
        block = teacher.get_submodule(slot.path)
        for spec in zoo[slot.name]:
            if spec.family != "keep" and get_family(spec.family).trainable:
                module = build_candidate(spec, block).requires_grad_(True).to(device)
                jobs.append(Job(slot, spec, module, make_optimizer(module, cfg)))
    return jobs


def _rank_agreement(fp32: dict, bf16: dict) -> dict:
    """Spearman and Kendall correlation of the candidates' scores in the two precisions."""
    from scipy.stats import kendalltau, spearmanr

    per_slot, pooled_a, pooled_b, changes, same_best = [], [], [], [], []
    for slot, records in fp32.items():
        keys = [k for k, r in records.items()
                if r.status == bf16[slot][k].status == "ok" and None not in (r.score, bf16[slot][k].score)]
        a = [records[k].score for k in keys]
        b = [bf16[slot][k].score for k in keys]
        pooled_a += a
        pooled_b += b
        changes += [abs(y - x) / abs(x) for x, y in zip(a, b) if x]
        if len(keys) >= 3:
            per_slot.append((spearmanr(a, b).statistic, kendalltau(a, b).statistic))
            same_best.append(keys[a.index(min(a))] == keys[b.index(min(b))])
    return {
        "spearman": round(statistics.fmean(s for s, _ in per_slot), 4),
        "kendall": round(statistics.fmean(k for _, k in per_slot), 4),
        "spearman_min_slot": round(min(s for s, _ in per_slot), 4),
        "spearman_pooled": round(float(spearmanr(pooled_a, pooled_b).statistic), 4),
        "kendall_pooled": round(float(kendalltau(pooled_a, pooled_b).statistic), 4),
        "same_best_candidate_share": round(sum(same_best) / len(same_best), 4),
        "median_rel_score_change": round(statistics.median(changes), 4),
        "scored_candidates": len(pooled_a),
    }


def amp_main(args: argparse.Namespace) -> None:
    """Phase 1 in float32 against phase 1 under bfloat16 autocast: speed and the scores' ranking."""
    import timm

    device = torch.device(args.device)
    splits = digits_splits(args.image_size, seed=0)
    train = make_loader(splits.train, args.batch, shuffle=True, seed=0)
    val = make_loader(splits.val, args.batch, shuffle=False, seed=0)
    torch.manual_seed(0)
    teacher = timm.create_model(args.model, pretrained=False, num_classes=10, in_chans=splits.in_chans)
    with torch.no_grad():  # BatchNorm statistics of the real images, so the teacher's features are not degenerate
        for m in teacher.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        teacher.train()
        for i, (x, _) in enumerate(train):
            if i >= 8:
                break
            teacher(x)
    teacher.eval().to(device)
    shape = (splits.in_chans, args.image_size, args.image_size)
    wanted = args.slots.split(",")
    slots = [s for s in discover_slots(teacher, torch.randn(2, *shape, device=device)) if s.name in wanted]
    zoo = build_zoo(teacher, slots, FAMILIES)
    cfg = DistillConfig(epochs=1)

    torch.manual_seed(1)
    jobs32 = _jobs(teacher, slots, zoo, cfg, device)
    jobs16 = [Job(j.slot, j.spec, copy.deepcopy(j.module)) for j in jobs32]

    def bf16() -> ContextManager:
        return autocast(device, torch.bfloat16)

    batches = [x.to(device) for x, _ in list(train)[:4]]
    t32, t16 = [], []
    with ChunkTrainer(copy.deepcopy(teacher), jobs32, cfg, 10**6) as tr32, \
            ChunkTrainer(copy.deepcopy(teacher), jobs16, cfg, 10**6, autocast=bf16) as tr16:
        for r in range(args.warmup + args.steps):
            x = batches[r % len(batches)]
            first, second = ((tr32, t32), (tr16, t16)) if r % 2 == 0 else ((tr16, t16), (tr32, t32))
            for trainer, times in (first, second):
                t = _timed(lambda trainer=trainer, x=x, r=r: trainer.step(x, r), device)
                if r >= args.warmup:
                    times.append(t)

    records, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for amp in ("off", "bf16"):
            start = time.perf_counter()
            records[amp] = layerwise.distill_zoo(teacher, slots, zoo, train, val,
                                                 DistillConfig(epochs=args.amp_epochs, amp=amp), Path(tmp) / amp)
            seconds[amp] = time.perf_counter() - start
    failed = {amp: [f"{s}/{k}" for s, recs in r.items() for k, rec in recs.items() if rec.status == "failed"]
              for amp, r in records.items()}
    med32, med16 = statistics.median(t32), statistics.median(t16)
    result = {
        "bf16_speedup": round(med32 / med16, 4),
        "fp32_ms_per_batch": round(1000 * med32, 2),
        "bf16_ms_per_batch": round(1000 * med16, 2),
        "distill_seconds_fp32": round(seconds["off"], 1),
        "distill_seconds_bf16": round(seconds["bf16"], 1),
        "distill_speedup": round(seconds["off"] / seconds["bf16"], 4),
        **_rank_agreement(records["off"], records["bf16"]),
        "failed": failed,
        "setting": {
            "model": args.model, "data": "digits", "image_size": args.image_size, "batch": args.batch,
            "slots": [s.name for s in slots], "candidates": len(jobs32), "families": FAMILIES,
            "threads": args.threads, "device": str(device), "measured_batches": args.steps,
            "warmup_batches": args.warmup, "amp_epochs": args.amp_epochs, "torch": torch.__version__,
            "isa": isa_features(),
        },
    }
    print(f"{len(jobs32)} candidates, {args.model} {args.image_size}px batch {args.batch}, {args.threads} thread(s): "
          f"phase 1 {result['fp32_ms_per_batch']} ms/batch in float32, {result['bf16_ms_per_batch']} under bfloat16 "
          f"(x{result['bf16_speedup']}); score ranks: Spearman {result['spearman']}, Kendall {result['kendall']}")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--slots", default=SLOTS, help="comma-separated slot names")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=15, help="measured batches")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="compare float32 with bfloat16 autocast instead")
    parser.add_argument("--amp-epochs", type=int, default=2, help="with --amp: distillation epochs per precision")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.amp:
        amp_main(args)
        return
    device = torch.device(args.device)
    import timm

    torch.manual_seed(0)
    teacher = timm.create_model(args.model, pretrained=False, num_classes=10).eval()
    shape = (3, args.image_size, args.image_size)
    wanted = args.slots.split(",")
    slots = [s for s in discover_slots(teacher, torch.randn(2, *shape)) if s.name in wanted]
    zoo = build_zoo(teacher, slots, FAMILIES)
    teacher.to(device)
    plain = copy.deepcopy(teacher)
    cfg = DistillConfig(epochs=1)
    jobs = _jobs(teacher, slots, zoo, cfg, device)
    batches = [torch.randn(args.batch, *shape, device=device) for _ in range(4)]
    with SlotCapture(plain, slots) as capture:
        captured = [{k: (i.clone(), o.clone()) for k, (i, o) in capture.run(x).items()} for x in batches]
    loss_fn = feature_loss(cfg.loss)

    def alone(job: Job, io: dict) -> None:
        x_in, target = io[job.slot.name]
        loss = loss_fn(job.module(x_in), target)
        job.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        job.optimizer.step()

    phase, teacher_t, alone_sum, per_candidate = [], [], [], {(j.slot.name, j.spec.uid): [] for j in jobs}
    with ChunkTrainer(teacher, jobs, cfg, steps_per_epoch=10**6) as trainer, torch.no_grad():
        for r in range(args.warmup + args.steps):
            x, io = batches[r % len(batches)], captured[r % len(batches)]
            with torch.enable_grad():
                t_phase = _timed(lambda x=x, r=r: trainer.step(x, r), device)
            t_teacher = _timed(lambda x=x: plain(x), device)
            t_jobs = []
            with torch.enable_grad():
                for job in jobs:
                    t_jobs.append(_timed(lambda job=job, io=io: alone(job, io), device))
            if r >= args.warmup:
                phase.append(t_phase)
                teacher_t.append(t_teacher)
                alone_sum.append(t_teacher + sum(t_jobs))
                for job, t in zip(jobs, t_jobs):
                    per_candidate[job.slot.name, job.spec.uid].append(t)
    failed = [j.spec.key for j in jobs if j.failed]

    # one whole epoch through the library's chunk loop: data loading, steps, epoch checkpoints
    n_epoch = 8
    data = TensorDataset(torch.randn(n_epoch * args.batch, *shape), torch.zeros(n_epoch * args.batch, dtype=torch.long))
    stream = EpochStream(DataLoader(data, batch_size=args.batch, shuffle=True), seed=0, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            job.start_epoch, job.failed = 0, None
        epoch_s = _timed(lambda: layerwise.train_chunk(teacher, jobs, stream, cfg, Path(tmp), "bench", "epoch"), device)

    med_phase, med_alone = statistics.median(phase), statistics.median(alone_sum)
    result = {
        "overhead_ratio": round(med_phase / med_alone, 4),
        "candidates_per_second": round(len(jobs) / med_phase, 2),
        "median_ratio_per_batch": round(statistics.median(p / a for p, a in zip(phase, alone_sum)), 4),
        "end_to_end_ratio": round(epoch_s / n_epoch / med_alone, 4),
        "phase1_ms_per_batch": round(1000 * med_phase, 2),
        "alone_ms_per_batch": round(1000 * med_alone, 2),
        "teacher_forward_ms": round(1000 * statistics.median(teacher_t), 2),
        "candidates_alone_ms": round(1000 * sum(statistics.median(v) for v in per_candidate.values()), 2),
        "failed": failed,
        "setting": {
            "model": args.model,
            "image_size": args.image_size,
            "batch": args.batch,
            "slots": [s.name for s in slots],
            "candidates": len(jobs),
            "families": FAMILIES,
            "threads": args.threads,
            "device": str(device),
            "measured_batches": args.steps,
            "warmup_batches": args.warmup,
            "torch": torch.__version__,
        },
    }
    print(f"{len(jobs)} candidates on {len(slots)} slots of {args.model} ({args.image_size}px, batch {args.batch}, "
          f"{args.threads} thread(s)): phase 1 {result['phase1_ms_per_batch']} ms/batch, teacher "
          f"{result['teacher_forward_ms']} ms + candidates alone {result['candidates_alone_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
