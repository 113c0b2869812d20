"""W&B: a run with --wandb offline leaves a local W&B run holding each stage's numbers and tables."""
from __future__ import annotations

import json
import time

import pytest
import yaml
from tiny import tiny_recipe
from wandb_records import logged_keys

from hant.cli import main
from hant.errors import ConfigError
from hant.tracking import resolve_mode


def test_offline_run_holds_the_logged_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(wandb={"mode": "auto"})))
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--wandb", "offline"]) == 0
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    deadline = time.time() + 30  # wandb's service may still be flushing the file after finish()
    while True:
        history, summary = logged_keys(files[0])
        if "result/student/accuracy" in summary or time.time() > deadline:
            break
        time.sleep(0.5)
    for key in ("teacher/test_accuracy", "profile/teacher_ms", "distill/candidates", "search/predicted_ms",
                "finetune/test_accuracy", "report/student_latency_ms", "selection/nrows"):
        assert key in history, key
    report = json.loads((run_dir / "report.json").read_text())
    zoo = json.loads((run_dir / "zoo.json").read_text())
    assert int(history["candidates/nrows"]) == sum(len(specs) for specs in zoo.values())
    assert float(summary["result/student/accuracy"]) == pytest.approx(report["student"]["accuracy"])
    assert float(history["teacher/test_accuracy"]) == pytest.approx(report["teacher"]["accuracy"])


def test_auto_mode_is_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    with pytest.raises(ConfigError, match="W&B mode"):
        resolve_mode("sometimes")
