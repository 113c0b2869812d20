"""`hant prune` end to end on a tiny ResNet: HALP and SP-LAMP meet the budget and save a loadable network."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from hant import load_student
from hant.cli import main

RECIPE = {
    "name": "tiny_prune",
    "data": {"dataset": "digits_hard", "image_size": 32, "batch_size": 64},
    "teacher": {
        "model": "resnet18",
        "kwargs": {"channels": [16, 32, 64, 128], "layers": [1, 1, 1, 1], "replace_stem_pool": True},
        "train": {"epochs": 1, "lr": 0.05},
    },
    "target": {"device": "cpu", "backend": "torch", "batch_size": 32, "threads": 1},
    "profile": {"rel_precision": 0.05, "time_budget_s": 3},
    "search": {"budget": 0.75, "margin": 0.05, "verify_rounds": 6},
    "finetune": {"epochs": 1, "lr": 0.01},
    "prune": {"fractions": [1.0, 0.5, 0.25], "divisor": 4, "steps": 2, "epochs_per_step": 1},
}



@pytest.mark.parametrize("method", ["halp", "splamp"])
def test_prune_command(tmp_path, capsys, method: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run = tmp_path / "run"
    assert main(["prune", str(recipe), "--run-dir", str(run), "--method", method]) == 0, capsys.readouterr().err
    out = run / f"pruned-{method}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fit_rounds"], "the network was measured beside the teacher"
    last = summary["fit_rounds"][-1]
    assert last["student_ms"] <= 0.75 * last["teacher_ms"]
    assert any(n < 128 for n in summary["counts"].values())
    if method == "halp":
        assert [s["step"] for s in summary["steps"]] == [0, 1]
    net = load_student(out)  # hant.load_student reads pruned networks too
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)
