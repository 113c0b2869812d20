"""`hant prune` end to end on a tiny ResNet: the prune variant of the pipeline meets the budget, writes
the run's report files, skips finished stages, and saves a loadable network."""
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
    "wandb": {"mode": "off"},
}


@pytest.mark.parametrize("method", ["halp", "splamp"])
def test_prune_command(tmp_path, capsys, method: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run = tmp_path / "run"
    assert main(["prune", str(recipe), "--run-dir", str(run), "--method", method]) == 0, capsys.readouterr().err
    for name in ("report.json", "report.md", "pareto.png", "recipe.json", "slots.json"):
        assert (run / name).is_file(), name  # the report files of `hant run`
    record = json.loads((run / "pruned" / "prune.json").read_text())
    assert record["fit_rounds"], "the network was measured beside the teacher"
    last = record["fit_rounds"][-1]
    assert last["student_ms"] <= 0.75 * last["teacher_ms"]
    assert any(n < 128 for n in record["counts"].values())
    if method == "halp":
        assert [s["step"] for s in record["steps"]] == [0, 1]
    report = json.loads((run / "report.json").read_text())
    assert report["search"]["backend"] == f"prune:{method}" and report["student"]["changed_slots"] > 0
    assert all(row["score"] >= 0 for row in report["slots"])  # the importance each slot's cut removed
    net = load_student(run / "student")  # hant.load_student reads pruned networks too
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    capsys.readouterr()
    assert main(["prune", str(recipe), "--run-dir", str(run), "--method", method]) == 0
    out = capsys.readouterr().out
    assert all(f"[{s}] up to date, skipped" in out for s in ("teacher", "slots", "prune-profile", "prune", "finetune", "report"))


def test_prune_dry_run_reads_the_prune_section(tmp_path, capsys) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "prune": {**RECIPE["prune"], "fractions": [0.5, 1.0]}}))
    assert main(["prune", str(recipe), "--dry-run"]) != 0
    assert "prune.fractions" in capsys.readouterr().err
    recipe.write_text(yaml.safe_dump(RECIPE))
    assert main(["prune", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "prunable channel groups" in out and "kept whole: fc: it feeds the network's output" in out
