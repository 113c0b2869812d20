"""Phase 3: fine-tuning under torchrun with two CPU processes, and exact resume after a kill."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_recipe
from torch.utils.data import DataLoader, TensorDataset

from hant.config import TrainConfig, recipe_from_dict
from hant.distill import trainer
from hant.distill.trainer import train_classifier
from hant.io import read_json
from hant.pipeline import Context, RunDir, run_stages


def test_finetune_under_torchrun_with_two_gloo_processes(tmp_path):
    run = RunDir(tmp_path / "run")
    run_stages(Context(recipe_from_dict(tiny_recipe()), run), "search")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "hant.cli", "finetune", str(run.root)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("[finetune] done") == 1, "only rank 0 reports"
    metrics = read_json(run.student_metrics)
    assert metrics["test_accuracy"] > 40
    assert len(metrics["history"]) == tiny_recipe()["finetune"]["epochs"]
    assert run.stage_record("finetune") is not None
    assert not (run.student_dir / "train_state.pt").exists()


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g), DataLoader(TensorDataset(x, y), 64)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def test_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=4, lr=0.1, warmup_epochs=1, ema_decay=0.9)
    reference = _model()
    train_classifier(reference, *_data(), cfg, seed=3)

    real_evaluate = trainer.evaluate
    calls = []

    def dying_evaluate(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # the third epoch's validation: epochs 0 and 1 are checkpointed
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    ckpt = tmp_path / "state.pt"
    model = _model()
    monkeypatch.setattr(trainer, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(model, *_data(), cfg, seed=3, checkpoint=ckpt)
    assert ckpt.is_file()
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)
    resumed = _model()
    result = train_classifier(resumed, *_data(), cfg, seed=3, checkpoint=ckpt)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert not ckpt.exists()


def test_finetune_keeps_the_assembled_student_when_training_makes_it_worse(tmp_path):
    """A learning rate far too high wrecks the student; the assembled one is saved instead.

    The budget of 1.0 keeps every teacher block, so the assembled student is the trained teacher
    whatever latencies this machine measures, and a wrecked fine-tune can only be worse."""
    run = RunDir(tmp_path / "run")
    recipe = tiny_recipe(search={"budget": 1.0}, finetune={"epochs": 1, "lr": 1e4, "warmup_epochs": 0})
    run_stages(Context(recipe_from_dict(recipe), run), "finetune")
    metrics = read_json(run.student_metrics)
    assert metrics["assembled_val_accuracy"] > 30.0, "the assembled student is the trained teacher"
    assert metrics["finetuned_val_accuracy"] < metrics["assembled_val_accuracy"]
    assert metrics["kept"] == "assembled"
    assert metrics["val_accuracy"] == metrics["assembled_val_accuracy"]
    assert run.stage_record("finetune")["summary"]["kept"] == "assembled"
