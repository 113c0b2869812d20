"""Every stage on a tiny model, skipping and resuming, and the CLI's error handling."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tiny import tiny_recipe

from hant.cli import main
from hant.config import recipe_from_dict
from hant.io import read_json
from hant.pipeline import STAGE_ORDER, Context, RunDir, run_stages
from hant.pipeline.report import render_markdown



def _run(recipe: dict, root: Path, upto: str = "report"):
    events = []
    ctx = Context(recipe_from_dict(recipe), RunDir(root))
    run_stages(ctx, upto, on_event=lambda stage, event, info: events.append((stage, event)))
    return events


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    events = _run(tiny_recipe(), root)
    return root, events


def test_every_stage_runs_and_writes_its_outputs(finished_run):
    root, events = finished_run
    assert [s for s, e in events if e == "finished"] == STAGE_ORDER
    run = RunDir(root)
    slots = read_json(run.slots)
    zoo = read_json(run.zoo)
    assert len(slots) == 4
    assert all(specs[0]["family"] == "keep" for specs in zoo.values())
    scores = read_json(run.scores)
    assert all(scores[s]["keep"]["score"] == 0.0 for s in scores)
    latency = read_json(run.latency)
    assert latency["extra"]["teacher_ms"] > 0
    report = read_json(run.report_json)
    assert report["teacher"]["accuracy"] > 60, "the tiny teacher should learn the digits"
    assert report["student"]["accuracy"] > 40, "the fine-tuned student should recover"
    for key in ("accuracy", "latency_ms"):
        assert report["teacher"][key] > 0
        assert report["student"][key] > 0
    assert report["student"]["predicted_latency_ms"] > 0
    assert report["search"]["status"] in ("optimal", "feasible")
    assert report["search"]["solve_seconds"] >= 0
    assert set(report["selection"]) == {s["name"] for s in slots}
    assert set(report["stage_seconds"]) == set(STAGE_ORDER)
    assert (run.student_dir / "arch.json").is_file() and (run.student_dir / "weights.safetensors").is_file()
    md = run.report_md.read_text()
    assert "| slot | chosen operation | precision | latency (ms) | teacher block (ms) | score |" in md
    assert [r["slot"] for r in report["slots"]] == [s["name"] for s in slots]
    assert all(r["latency_ms"] >= 0 and r["score"] >= 0 for r in report["slots"])
    assert (root / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["accuracy_split"] == "test" and "accuracy on the test split" in md
    assert "validation split, which chose the best epoch" in render_markdown({**report, "accuracy_split": "val"})


def test_rerun_skips_every_finished_stage(finished_run):
    root, _ = finished_run
    events = _run(tiny_recipe(), root)
    assert events == [(s, "skipped") for s in STAGE_ORDER]


def test_changed_budget_reruns_only_search_and_after(finished_run, tmp_path):
    root, _ = finished_run
    events = _run(tiny_recipe(search={"budget": 0.95}), root)
    ran = [s for s, e in events if e == "finished"]
    assert ran == ["search", "finetune", "report"]
    assert read_json(RunDir(root).selection)["budget_fraction"] == pytest.approx(0.95)


def test_a_stage_whose_output_vanished_runs_again(finished_run):
    root, _ = finished_run
    RunDir(root).zoo.unlink()
    events = dict(_run(tiny_recipe(search={"budget": 0.95}), root, upto="zoo"))
    assert events["zoo"] == "finished" and events["teacher"] == "skipped"


def test_stage_command_on_a_directory_without_recipe_is_a_clear_error(tmp_path, capsys):
    assert main(["search", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "recipe.json" in err and "Traceback" not in err


def test_unknown_recipe_key_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "zoo": {"familes": {}}}))
    assert main(["run", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "zoo.familes" in err


def test_infeasible_budget_names_the_smallest_latency(finished_run, tmp_path, capsys):
    root, _ = finished_run
    recipe = tiny_recipe(search={"budget": 0.01})
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["search", str(root), "--recipe", str(tmp_path / "r.yaml")]) == 2
    assert "smallest achievable latency" in capsys.readouterr().err


def test_a_vision_transformer_runs_every_stage(tmp_path):
    """Token-shaped slots go through distillation, search, assembly, fine-tuning and reload."""
    recipe = tiny_recipe(
        teacher={
            "model": "vit_tiny_patch16_224",
            "kwargs": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 3, "num_heads": 2},
            "train": {"epochs": 2, "lr": 0.001, "optimizer": "adamw", "weight_decay": 0.05},
        },
        zoo={"families": {"identity": {}, "fewer_heads": {"importance": "taylor"}, "slim_vit": {"ratios": [1.0], "importance": "taylor"},
                          "mlp_only": {"ratios": [1.0], "importance": "l1"}}},
        finetune={"epochs": 1, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.05},
        search={"budget": 0.7, "verify_rounds": 2},
    )
    _run(recipe, tmp_path)
    run = RunDir(tmp_path)
    slots = read_json(run.slots)
    assert [s["kind"] for s in slots] == ["transformer_block"] * 3
    assert all(s["in_shape"] == [17, 32] for s in slots)  # class token + 4x4 patches
    scores = read_json(run.scores)
    assert any(k.startswith("slim_vit") for k in scores["blocks.0"])
    report = read_json(run.report_json)
    assert report["student"]["latency_ms"] > 0 and report["student"]["accuracy"] > 0
    from hant import load_student

    student = load_student(run.student_dir)
    import torch

    assert student(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_search_and_report_judge_the_budget_by_one_definition(finished_run):
    """Both anchor the limit to the teacher measured beside the student, as the same fraction."""
    root, _ = finished_run
    run = RunDir(root)
    search = run.stage_record("search")["summary"]
    teacher_in_search = read_json(run.selection)["verify_rounds"][-1]["measured_teacher_ms"]
    report = read_json(run.report_json)
    assert search["within_budget"] == (search["measured_ms"] <= search["measured_limit_ms"])
    assert report["within_budget"] == (report["student"]["latency_ms"] <= report["budget_ms"])
    assert search["measured_limit_ms"] / teacher_in_search == pytest.approx(report["budget_ms"] / report["teacher"]["latency_ms"])
