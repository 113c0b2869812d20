"""The SIGKILL matrix: each training stage is killed at a random point after its first
checkpoint, re-run, and must end with files identical, byte for byte, to an uninterrupted run's."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hant.io import hash_file
from tests.tiny import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _hant(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hant.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


def _finish(*args: str) -> None:
    proc = _hant(*args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


def _kill_after(path_glob: str, run: Path, args: tuple[str, ...], delay_s: float) -> bool:
    """Start ``hant args``; SIGKILL it ``delay_s`` after a file matching ``path_glob`` appears.
    Returns whether it was killed (False: it finished first)."""
    proc = _hant(*args)
    deadline = time.time() + 300
    while not list(run.glob(path_glob)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay_s)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _copy(base: Path, run: Path) -> Path:
    shutil.copytree(base, run)
    return run


TEACHER_RECIPE = tiny_recipe(teacher={"train": {"epochs": 4, "lr": 0.1}})


def test_killed_teacher_training_resumes_to_identical_weights(tmp_path):
    """The teacher stage (the one stage before the zoo; tests/faults/test_kill_pipeline.py kills the
    later ones) killed after a random epoch checkpoint ends with the uninterrupted run's weights."""
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(TEACHER_RECIPE))
    weights = "teacher/weights.safetensors"
    ref = tmp_path / "ref"
    _finish("teacher", str(ref), "--recipe", str(recipe_file))
    delays = [random.uniform(0.0, 0.6) for _ in range(2)]
    killed_any = False
    for i, delay in enumerate(delays):
        run = tmp_path / f"killed{i}"
        killed_any |= _kill_after("teacher/train_state.pt", run, ("teacher", str(run), "--recipe", str(recipe_file)), delay)
        _finish("teacher", str(run), "--recipe", str(recipe_file))
        assert hash_file(run / weights) == hash_file(ref / weights), f"run {i} (delay {delay:.2f} s) differs"
    assert killed_any, f"no run was killed before it finished (delays {delays})"


FINETUNE_CHILD = """
import sys
from pathlib import Path

import timm
import torch

from hant.config import FinetuneConfig, recipe_from_dict
from hant.distill.trainer import train_classifier
from hant.io import save_tensors
from hant.pipeline import Context, RunDir
from tests.tiny import tiny_recipe

torch.set_num_threads(1)
out = Path(sys.argv[1])
ctx = Context(recipe_from_dict(tiny_recipe()), RunDir(out))
kw = dict(num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=(1, 1, 1, 1), replace_stem_pool=True)
torch.manual_seed(0)
teacher, student = timm.create_model("resnet18", **kw), timm.create_model("resnet18", drop_rate=0.2, **kw)
cfg = FinetuneConfig(epochs=4, lr=0.05, ema_decay=0.9, label_smoothing=0.1)
torch.manual_seed(1)
result = train_classifier(student, ctx.train_loader(seed_offset=2), ctx.eval_loader("val"), cfg, teacher=teacher,
                          kd_alpha=0.7, augment=ctx.augment(), checkpoint=out / "train_state.pt", seed=2)
save_tensors(out / "weights.safetensors", student.state_dict())
(out / "history.txt").write_text(repr(result.history))
"""


def _child(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", FINETUNE_CHILD, str(out)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_kd_finetune_loop_resumes_to_identical_weights(tmp_path):
    """The fine-tune loop (KD, EMA, dropout, label smoothing, random shifts) killed after a
    random epoch checkpoint ends with the uninterrupted run's weights and history."""
    ref = _child(tmp_path / "ref")
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()
    killed_any = False
    for i, delay in enumerate(random.Random().uniform(0.0, 0.5) for _ in range(2)):
        run = tmp_path / f"killed{i}"
        proc = _child(run)
        while not (run / "train_state.pt").exists() and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_any = True
        again = _child(run)
        assert again.wait(timeout=300) == 0, again.stderr.read().decode()
        assert hash_file(run / "weights.safetensors") == hash_file(tmp_path / "ref" / "weights.safetensors")
        assert (run / "history.txt").read_text() == (tmp_path / "ref" / "history.txt").read_text()
    assert killed_any, "no run was killed before it finished"


PRUNE_RECIPE = tiny_recipe(
    teacher={"train": {"epochs": 1, "lr": 0.1}},
    finetune={"epochs": 4},
    search={"budget": 0.8, "verify_rounds": 1},
    profile={"rel_precision": 0.3, "time_budget_s": 1},
    prune={"method": "halp", "fractions": [1.0, 0.5], "divisor": 4, "steps": 2, "epochs_per_step": 1},
)


def _prune(recipe_file: Path, run: Path) -> tuple[str, ...]:
    return ("prune", str(recipe_file), "--run-dir", str(run))


def _records(run: Path, *stages: str) -> dict[str, str]:
    return {s: hash_file(run / ".stages" / f"{s}.json") for s in stages}


def test_killed_hant_prune_resumes(tmp_path):
    """`hant prune` killed inside its prune stage re-runs that stage and keeps the finished ones;
    killed inside fine-tuning it resumes from the epoch checkpoint to the uninterrupted run's weights."""
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(PRUNE_RECIPE))
    base = tmp_path / "base"
    _finish(*_prune(recipe_file, base))
    for name in ("student", "report.json", "report.md", ".stages/finetune.json", ".stages/report.json"):
        path = base / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()  # base: the run up to its prune stage
    pruned = {f: hash_file(base / "pruned" / f) for f in ("weights.safetensors", "arch.json")}
    ref = _copy(base, tmp_path / "ref")
    _finish(*_prune(recipe_file, ref))

    upstream = ("teacher", "slots", "prune-profile")
    mid_prune = _copy(base, tmp_path / "mid_prune")
    (mid_prune / ".stages" / "prune.json").unlink()
    before = _records(mid_prune, *upstream)
    _kill_after("prune_latency.json", mid_prune, _prune(recipe_file, mid_prune), random.uniform(0.5, 1.5))
    _finish(*_prune(recipe_file, mid_prune))
    assert _records(mid_prune, *upstream) == before, "finished stages were skipped, not redone"
    assert json.loads((mid_prune / "report.json").read_text())["student"]["latency_ms"] > 0

    run = _copy(base, tmp_path / "killed")
    delay = random.uniform(0.0, 0.5)
    assert _kill_after("student/train_state.pt", run, _prune(recipe_file, run), delay), f"it finished first (delay {delay})"
    _finish(*_prune(recipe_file, run))
    assert {f: hash_file(run / "pruned" / f) for f in pruned} == pruned
    assert hash_file(run / "student" / "weights.safetensors") == hash_file(ref / "student" / "weights.safetensors")
    for name in ("report.json", "report.md", "pareto.png"):
        assert (run / name).is_file(), name
