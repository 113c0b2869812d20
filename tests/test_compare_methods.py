"""benchmarks/compare_methods.py: its one-line errors."""
from __future__ import annotations

import sys
from pathlib import Path

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
