"""``hant search``: standalone problems (--problem), the Pareto sweep of a run directory (--sweep)."""
from __future__ import annotations

import json
import shutil

import pytest
import search_instances as instances
from tiny import tiny_recipe

from hant.cli import main
from hant.config import recipe_from_dict
from hant.io import read_json
from hant.pipeline import Context, RunDir, run_stages
from hant.search import problem_to_dict

ANSWER_KEYS = {"status", "objective", "latency_ms", "selection", "solve_seconds", "gap"}


@pytest.fixture()
def problem_file(tmp_path):
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem_to_dict(instances.realistic(8, 12, seed=4, fraction=0.4))))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["search", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("backend", ["cpsat", "scip", "cbc"])
def test_problem_prints_the_answer_as_json(problem_file, capsys, backend):
    code, out, err = run_cli(capsys, "--problem", str(problem_file), "--backend", backend)
    assert code == 0 and err == ""
    answer = json.loads(out)
    assert ANSWER_KEYS <= set(answer)
    assert answer["status"] == "optimal" and answer["gap"] == 0.0
    assert set(answer["selection"]) == {f"slot{i}" for i in range(8)}
    assert answer["latency_ms"] <= answer["budget_ms"]
    assert answer["backend"] == backend
    ref = json.loads(problem_file.read_text())
    assert answer["objective"] == pytest.approx(
        sum(next(c["score"] for c in s["candidates"] if c["key"] == answer["selection"][s["name"]]) for s in ref["slots"])
    )


def test_budget_ms_overrides_the_file(problem_file, capsys):
    _, out, _ = run_cli(capsys, "--problem", str(problem_file), "--budget-ms", "1000")
    answer = json.loads(out)
    assert answer["budget_ms"] == 1000.0 and answer["objective"] == 0.0
    assert set(answer["selection"].values()) == {"keep"}


def one_line_error(capsys, *argv: str) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("hant: error: ") and err.count("\n") == 1, err
    return err


def test_infeasible_budget_names_the_smallest_latency(problem_file, capsys):
    err = one_line_error(capsys, "--problem", str(problem_file), "--budget-ms", "0.5")
    assert "smallest achievable latency is" in err and "raise the budget" in err


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d["slots"][2]["candidates"][3].pop("score"), "slot 'slot2' candidate 3 has no 'score'"),
        (lambda d: d["slots"][0]["candidates"][1].update(latency_ms=-1), "slot 'slot0' candidate 1 ('c1') has latency_ms=-1.0"),
        (lambda d: d.pop("budget_ms"), "the problem has no 'budget_ms'"),
        (lambda d: d.update(budget=3), "the problem has unknown field 'budget'"),
        (lambda d: d["slots"][1].update(name=7), "slot 1 has name=7"),
    ],
)
def test_malformed_problem_file_names_the_field(problem_file, capsys, edit, field):
    d = json.loads(problem_file.read_text())
    edit(d)
    problem_file.write_text(json.dumps(d))
    assert field in one_line_error(capsys, "--problem", str(problem_file))


def test_unreadable_problem_files(tmp_path, capsys):
    assert "cannot read the problem file" in one_line_error(capsys, "--problem", str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"slots": [}')
    assert "is not valid JSON" in one_line_error(capsys, "--problem", str(bad))


def test_argument_mistakes(problem_file, tmp_path, capsys):
    assert "--problem" in one_line_error(capsys)
    assert "not both" in one_line_error(capsys, str(tmp_path), "--problem", str(problem_file))
    assert "--budget-ms" in one_line_error(capsys, "--problem", str(problem_file), "--budget", "0.5")
    assert "--budgets" in one_line_error(capsys, "--problem", str(problem_file), "--sweep", "--budgets", "0.5,x")


def test_problem_sweep_is_monotone(problem_file, capsys):
    code, out, _ = run_cli(capsys, "--problem", str(problem_file), "--sweep", "--budgets", "1.0,0.4,0.6,0.01,0.8")
    assert code == 0
    points = json.loads(out)["points"]
    assert [p["budget_fraction"] for p in points] == [0.01, 0.4, 0.6, 0.8, 1.0]
    assert points[0]["status"] == "infeasible" and points[0]["min_latency_ms"] > points[0]["budget_ms"]
    scores = [p["total_score"] for p in points[1:]]
    assert scores == sorted(scores, reverse=True) and scores[-1] == 0.0


# --------------------------------------------------------------------------- a run directory


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """A tiny run whose profile and distill stages are finished (teacher, slots, zoo too)."""
    root = tmp_path_factory.mktemp("sweep-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HANT_CACHE_DIR", str(tmp_path_factory.mktemp("sweep-cache")))
        recipe = tiny_recipe(teacher={"train": {"epochs": 1, "lr": 0.1}}, profile={"time_budget_s": 2})
        ctx = Context(recipe_from_dict(recipe), RunDir(root))
        run_stages(ctx, "distill")
        run_stages(ctx, "profile")
    return root


def test_sweep_writes_the_pareto_front(profiled_run, capsys):
    code, out, err = run_cli(capsys, str(profiled_run), "--sweep", "--budgets", "0.2,0.7,0.85,1.0")
    assert code == 0, err
    front = read_json(profiled_run / "search_front.json")
    assert front["teacher_ms"] > 0 and front["backend"] == "cpsat"
    points = front["points"]
    assert [p["budget_fraction"] for p in points] == pytest.approx([0.2, 0.7, 0.85, 1.0])
    solved = [p for p in points if p["status"] != "infeasible"]
    assert solved and solved[-1]["total_score"] == 0.0
    scores = [p["total_score"] for p in solved]
    assert scores == sorted(scores, reverse=True)
    for p in solved:
        assert p["predicted_latency_ms"] <= p["budget_ms"]
        assert {"budget_ms", "predicted_latency_ms", "total_score", "selection"} <= set(p)
    assert (profiled_run / "search_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "budget" in out and "search_front.json" in out
    assert not (profiled_run / "selection.json").exists(), "a sweep must not run the search stage"


def test_sweep_needs_profile_and_distill(profiled_run, tmp_path, capsys):
    (tmp_path / "recipe.json").write_text((profiled_run / "recipe.json").read_text())
    err = one_line_error(capsys, str(tmp_path), "--sweep")
    assert "latency.json" in err and "hant profile" in err


def test_search_with_a_new_budget_refreshes_student_and_report(profiled_run, tmp_path, capsys):
    run = RunDir(shutil.copytree(profiled_run, tmp_path / "run"))
    code, out, err = run_cli(capsys, str(run.root), "--budget", "0.95")
    assert code == 0, err
    first = read_json(run.report_json)
    assert read_json(run.selection)["budget_fraction"] == pytest.approx(0.95)
    finetuned_at = run.stage_record("finetune")["finished_at"]
    code, out, err = run_cli(capsys, str(run.root), "--budget", "0.8")
    assert code == 0, err
    assert "[finetune] done" in out and "[report] done" in out
    assert run.stage_record("finetune")["finished_at"] > finetuned_at
    second = read_json(run.report_json)
    assert second["search"]["budget_ms"] == pytest.approx(first["search"]["budget_ms"] * 0.8 / 0.95)
