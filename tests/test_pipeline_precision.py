"""The pipeline on an OpenVINO float32 target with int8 as a per-slot choice: (operation, precision)
candidates measured and scored as deployed, a mixed-precision student, the report's baselines, export."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny import tiny_recipe

from hant.config import recipe_from_dict
from hant.io import read_json
from hant.pipeline import Context, RunDir, run_stages
from hant.student import student_deployment


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    recipe = tiny_recipe(
        target={"backend": "openvino", "dtype": "float32", "batch_size": 32, "threads": 1},
        zoo={"families": {"identity": {}, "pruned": {"widths": [0.5]}}, "precisions": ["int8"]},
        profile={"calibration_networks": 4},
        search={"budget": 1.0, "verify_rounds": 1},
    )
    run_stages(Context(recipe_from_dict(recipe), RunDir(root)), "report")
    return RunDir(root)


def test_every_candidate_is_measured_and_scored_in_both_precisions(mixed_run):
    latency = read_json(mixed_run.latency)
    assert latency["extra"]["precisions"] == ["float32", "int8"]
    uids = set(latency["entries"])
    assert any(u.endswith("@int8") for u in uids) and any("@" not in u and ":" not in u for u in uids)
    scores = read_json(mixed_run.scores)
    for records in scores.values():
        assert records["keep"]["score"] == 0.0
        quantized_keep = records["keep@int8"]
        assert quantized_keep["status"] == "ok" and quantized_keep["feature_loss"] > 0.0  # real int8 outputs


def test_the_report_shows_the_student_and_the_teachers_int8_quantization_as_deployed(mixed_run):
    report = read_json(mixed_run.report_json)
    # At a budget of 1.0 the student may be the teacher itself, so "within" is a coin toss on noise;
    # what must hold is that the verdict is the one its own numbers give.
    assert report["within_budget"] == (report["student"]["latency_ms"] <= report["budget_ms"])
    assert "teacher_int8" in report and report["teacher_int8"]["latency_ms"] > 0
    assert report["teacher"]["torch_eager_float32_ms"] > 0
    precisions = {row["precision"] for row in report["slots"]}
    assert precisions <= {"float32", "int8"}
    target, plan = student_deployment(mixed_run.student_dir)
    assert target.backend == "openvino" and plan.describe() == report["student"]["precision"]
    assert "int8 post-training quantization" in mixed_run.report_md.read_text()


def test_export_writes_the_openvino_ir_and_measures_that_file(mixed_run):
    out = subprocess.run([sys.executable, "-m", "hant.cli", "export", str(mixed_run.root)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["format"] == "openvino" and summary["path"].endswith(".xml")
    assert summary["artifact_latency_ms"] > 0 and 0 <= summary["artifact_test_accuracy"] <= 100
    report = read_json(mixed_run.report_json)
    assert abs(summary["artifact_test_accuracy"] - report["student"]["accuracy"]) < 1.0
