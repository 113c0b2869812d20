"""The SIGKILL matrix over the pipeline's stages after the zoo: each stage's command, killed at a
random moment inside that stage and run again, must finish, skip every stage before it, write what
an uninterrupted run writes (bit for bit where that run is deterministic: distill and finetune),
and leave outputs complete enough that a third run finds every stage up to date. (``hant run`` killed
anywhere is the same case: it runs these commands' stages in order.)"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from hant.config import recipe_from_dict
from hant.io import hash_file
from hant.pipeline import Context, RunDir, run_stages
from tests.tiny import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

KILLED_STAGES = ("profile", "distill", "search", "finetune", "report")


def _hant(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hant.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(*args: str) -> str:
    proc = _hant(*args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> tuple[Path, dict[str, tuple[Path, float]], Path]:
    """The recipe file; per stage after the zoo, a run directory holding every stage before it and
    the seconds that stage took uninterrupted; and the uninterrupted run."""
    tmp = tmp_path_factory.mktemp("kill-pipeline")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(teacher={"train": {"epochs": 1, "lr": 0.1}}, profile={"time_budget_s": 2})))
    base = tmp / "base"
    base.mkdir()
    _finish("zoo", str(base), "--recipe", str(recipe))
    taken = {}
    for stage in KILLED_STAGES:
        shutil.copytree(base, tmp / f"before-{stage}")
        out = _finish(stage, str(base), "--recipe", str(recipe))
        done = re.search(rf"^\[{stage}\] done in ([0-9.]+) s", out, re.MULTILINE)
        assert done, out
        taken[stage] = (tmp / f"before-{stage}", float(done.group(1)))
    return recipe, taken, base


def _deterministic_outputs(run: Path, stage: str) -> dict[str, str]:
    """Hashes of the files ``stage`` writes that an uninterrupted run reproduces bit for bit (the
    measured stages' latencies differ between any two runs, so they are checked for completeness)."""
    files = {
        "distill": ["scores.json", *(str(p.relative_to(run)) for p in sorted((run / "distill" / "candidates").glob("*.safetensors")))],
        "finetune": ["student/weights.safetensors", "student/arch.json"],
    }.get(stage, [])
    return {f: hash_file(run / f) for f in files}


def _kill_inside(stage: str, recipe: Path, run: Path, delay_s: float) -> bool:
    """Run the pipeline up to ``stage`` and SIGKILL it ``delay_s`` after that stage starts; False
    if the stage had finished by then."""
    proc = _hant(stage, str(run), "--recipe", str(recipe))
    started, done = threading.Event(), threading.Event()

    def watch() -> None:
        for line in proc.stdout:
            if line.startswith(f"[{stage}] running"):
                started.set()
            elif line.startswith(f"[{stage}] done"):
                done.set()
        started.set()

    threading.Thread(target=watch, daemon=True).start()
    assert started.wait(timeout=300), f"[{stage}] never started"
    if done.wait(timeout=delay_s) or proc.poll() is not None:
        proc.wait()
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return not done.is_set()


@pytest.mark.parametrize("stage", KILLED_STAGES)
def test_pipeline_killed_inside_a_stage_resumes_and_completes(snapshots, tmp_path, stage):
    recipe, taken, uninterrupted = snapshots
    before, seconds = taken[stage]
    delays = []
    for attempt in range(3):  # a stage can run faster than it did in the fixture: then try earlier
        run = tmp_path / f"run{attempt}"
        shutil.copytree(before, run)
        delays.append(random.Random().uniform(0.1, 0.7) * seconds / 2**attempt)
        if _kill_inside(stage, recipe, run, delays[-1]):
            break
    else:
        pytest.fail(f"[{stage}] finished within each of {delays} s; nothing was killed")

    resumed = _finish(stage, str(run), "--recipe", str(recipe))
    rerun = re.findall(r"^\[(\w+)\] running", resumed, re.MULTILINE)
    assert rerun == [stage], f"after a kill in {stage}, the resume ran {rerun}:\n{resumed}"
    assert f"[{stage}] done" in resumed, resumed
    assert _deterministic_outputs(run, stage) == _deterministic_outputs(uninterrupted, stage)

    events = []
    ctx = Context(recipe_from_dict(yaml.safe_load(recipe.read_text())), RunDir(run))
    run_stages(ctx, stage, on_event=lambda name, event, info: events.append((name, event)))
    assert all(event == "skipped" for _, event in events), f"incomplete after the resume: {events}"
