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

    .venv/bin/python benchmarks/distill_throughput.py [--threads 1] [--image-size 64] [--batch 16]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from hant.config import DistillConfig
from hant.distill import layerwise
from hant.distill.capture import SlotCapture
from hant.distill.chunk import ChunkTrainer, Job, make_optimizer
from hant.distill.losses import feature_loss
from hant.distill.stream import EpochStream
from hant.ops_zoo import build_candidate, build_zoo, get_family
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
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
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
    jobs = []
    for slot in slots:
        block = teacher.get_submodule(slot.path)
        for spec in zoo[slot.name]:
            if spec.family != "keep" and get_family(spec.family).trainable:
                module = build_candidate(spec, block).requires_grad_(True).to(device)
                jobs.append(Job(slot, spec, module, make_optimizer(module, cfg)))
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

    phase, teacher_t, alone_sum, per_candidate = [], [], [], {j.spec.uid: [] for j in jobs}
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
                    per_candidate[job.spec.uid].append(t)
    failed = [j.spec.key for j in jobs if j.failed]

    # one whole epoch through the library's chunk loop: data loading, steps, epoch checkpoints
    n_epoch = 8
    data = TensorDataset(torch.randn(n_epoch * args.batch, *shape), torch.zeros(n_epoch * args.batch, dtype=torch.long))
    stream = EpochStream(DataLoader(data, batch_size=args.batch, shuffle=True), seed=0, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            job.start_epoch, job.failed = 0, None
        epoch_s = _timed(lambda: layerwise._train_chunk(teacher, jobs, stream, cfg, Path(tmp), "bench", "epoch"), device)

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
