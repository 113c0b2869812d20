"""benchmarks/compare_methods.py: its --quick smoke run on the digits recipe (minutes: `make slow`)
and its one-line errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_methods  # noqa: E402


def test_methods_without_hant_are_a_one_line_error(capsys):
    assert compare_methods.main(["--recipe", "recipes/compare_digits.yaml", "--methods", "halp"]) == 2
    err = capsys.readouterr().err
    assert "must include hant" in err and "Traceback" not in err


def test_teacher_with_two_recipes_is_a_one_line_error(capsys):
    args = ["--teacher", "resnet10t", "--recipe", "recipes/compare_digits.yaml", "--recipe", "recipes/demo.yaml"]
    assert compare_methods.main(args) == 2
    assert "one recipe" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_on_digits_reports_every_method_budget_and_seed(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--recipe", "recipes/compare_digits.yaml", "--quick", "--seeds", "2", "--resamples", "200",
            "--work-dir", str(tmp_path / "work"), "--out-dir", str(out)]
    assert compare_methods.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    full = json.loads((out / "compare_methods_quick.json").read_text())
    assert (out / "compare_methods_quick.png").stat().st_size > 0
    r = full["recipes"]["compare_digits_quick"]
    methods = set(compare_methods.METHODS) - set(r["absent"])
    assert set(r["results"]) == methods == set(summary["compare_digits_quick"])
    for method, per_budget in r["results"].items():
        assert set(per_budget) == {"0.5", "0.3"}
        for cell in per_budget.values():
            assert set(cell["seeds"]) == {"0", "1"}
            assert ("gap_to_hant" in cell) == (method != "hant")
            for row in cell["seeds"].values():
                assert row["within_budget"] == (row["measured_latency_ms"] <= row["limit_ms"])
    flagged = {v.split(":")[0] for v in r["violations"]}
    over = {f"{m}@{b}#{s}" for m, pb in r["results"].items() for b, c in pb.items()
            for s, row in c["seeds"].items() if not row["within_budget"]}
    assert flagged == over
