"""Phase 1 in other processes: under torchrun with 2 gloo ranks, and killed with SIGKILL then resumed.

Both must end with the scores of one uninterrupted single-process run. Run as a script, this
file is that phase-1 run: ``python test_distill_runs.py OUT [--epochs N] [--chunk-size N]``.
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve()
SCORE_FIELDS = ("score", "feature_loss", "swap_kl", "swap_accuracy", "train_loss")


def _phase1(out: Path, epochs: int, chunk_size: int) -> None:
    """A tiny phase 1 (tiny timm ResNet, random data, one thread) writing ``out/scores.json`` on rank 0."""
    import logging

    import timm
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from hant.config import DistillConfig
    from hant.distill.layerwise import distill_zoo
    from hant.distributed import init_from_env, is_main
    from hant.io import write_json
    from hant.ops_zoo import CandidateFamily, build_zoo, register_family
    from hant.slots import discover_slots

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    torch.set_num_threads(1)
    init_from_env()

    @register_family("runs_nan")
    class NaNFamily(CandidateFamily):
        def candidates(self, slot):
            return [{}]

        def build(self, spec, teacher_block=None):
            sig = spec.signature
            return nn.Sequential(nn.Conv2d(sig.in_shape[0], sig.out_shape[0], 1, sig.stride), NaNOut())

    class NaNOut(nn.Module):
        def forward(self, x):
            return x * float("nan")

    torch.manual_seed(0)
    teacher = timm.create_model(
        "resnet18", num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=(1, 1, 1, 1), replace_stem_pool=True
    ).eval()
    slots = discover_slots(teacher, torch.randn(2, 1, 32, 32))[:3]
    families = {"identity": {}, "pruned": {"widths": [0.5]}, "conv_bn_act": {"kernels": [1, 3]}, "runs_nan": {}}
    zoo = build_zoo(teacher, slots, families)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(384, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (384,), generator=g)
    for m in teacher.modules():  # realistic BatchNorm statistics for the random teacher
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        teacher.train()(x)
        teacher.eval()
    train = DataLoader(TensorDataset(x[:288], y[:288]), batch_size=32, shuffle=True, generator=g)
    val = DataLoader(TensorDataset(x[288:], y[288:]), batch_size=48)
    cfg = DistillConfig(epochs=epochs, lr=5e-3, chunk_size=chunk_size, bn_recalibration_batches=4)
    records = distill_zoo(teacher, slots, zoo, train, val, cfg, out / "weights", seed=3)
    if is_main():
        write_json(out / "scores.json", {s: {k: vars(r) for k, r in recs.items()} for s, recs in records.items()})
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _run(out: Path, *extra: str, torchrun: int = 0, timeout: int = 300) -> subprocess.CompletedProcess:
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
    done = subprocess.run([*launcher, str(WORKER), str(out), *extra], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _same_scores(a: Path, b: Path, rel: float) -> None:
    left, right = json.loads((a / "scores.json").read_text()), json.loads((b / "scores.json").read_text())
    assert left.keys() == right.keys()
    for slot in left:
        assert left[slot].keys() == right[slot].keys()
        for key, rec in left[slot].items():
            other = right[slot][key]
            assert rec["status"] == other["status"], (slot, key)
            for field in SCORE_FIELDS:
                if rec[field] is None:
                    assert other[field] is None, (slot, key, field)
                else:
                    assert math.isclose(rec[field], other[field], rel_tol=rel, abs_tol=1e-12), (slot, key, field)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    _run(out, "--epochs", "3", "--chunk-size", "4")
    return out


def test_two_gloo_ranks_give_the_scores_of_one_process(single_process, tmp_path):
    _run(tmp_path, "--epochs", "3", "--chunk-size", "4", torchrun=2)
    _same_scores(single_process, tmp_path, 1e-5)
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert all(recs["runs_nan"]["status"] == "failed" for recs in scores.values())
    assert all(recs["conv_bn_act[k=3]"]["status"] == "ok" for recs in scores.values())


def test_sigkilled_run_resumes_to_the_same_scores(single_process, tmp_path):
    progress = tmp_path / "weights" / "progress"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), "--epochs", "3", "--chunk-size", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not any(progress.glob("*.safetensors")):
        time.sleep(0.01)
    assert proc.poll() is None, "phase 1 ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "scores.json").exists()
    done = _run(tmp_path, "--epochs", "3", "--chunk-size", "4")
    assert "resume after epoch" in done.stderr
    _same_scores(single_process, tmp_path, 1e-6)
    assert not any(progress.glob("*.safetensors")), "finished candidates leave no epoch checkpoints"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=4)
    args = parser.parse_args()
    _phase1(args.out, args.epochs, args.chunk_size)
