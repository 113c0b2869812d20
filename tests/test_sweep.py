"""Budget series with shared upstream stages, and W&B sweep configs that drive `hant run`."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
from tiny import tiny_recipe

from hant.cli import main
from hant.cli.main import build_parser
from hant.ops_zoo import list_families

SWEEPS = sorted((Path(__file__).parent.parent / "recipes" / "sweeps").glob("*.yaml"))


def test_budget_series_trains_the_teacher_once(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    assert main(["sweep", str(recipe), "--budgets", "0.9,0.95", "--run-dir", str(tmp_path / "s"), "--wandb", "off"]) == 0
    out = capsys.readouterr().out
    assert out.count("[teacher] done") == 1 and out.count("[distill] done") == 1
    assert out.count("[search] done") == 2 and out.count("[finetune] done") == 2
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["budget"] for r in rows] == [0.9, 0.95]
    for r in rows:
        assert Path(r["run_dir"], "student", "weights.safetensors").is_file()
        assert r["predicted_latency_ms"] > 0 and r["accuracy"] > 0
    assert (tmp_path / "s" / "sweep.png").is_file()


def test_an_unreachable_budget_is_a_row_and_the_others_still_run(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    run_dir = tmp_path / "s"
    assert main(["sweep", str(recipe), "--budgets", "0.01,0.95", "--run-dir", str(run_dir), "--wandb", "off"]) == 0
    out = capsys.readouterr().out
    assert "unreachable: no selection fits the budget" in out and out.count("[finetune] done") == 1
    low, high = json.loads((run_dir / "sweep.json").read_text())
    assert low["budget"] == 0.01 and low["min_latency_ms"] > low["budget_ms"] > 0 and "accuracy" not in low
    assert high["budget"] == 0.95 and Path(high["run_dir"], "student", "weights.safetensors").is_file()
    # only unreachable budgets: the sweep fails, saying so (the shared stages are current by now)
    assert main(["sweep", str(recipe), "--budgets", "0.01", "--run-dir", str(run_dir), "--wandb", "off"]) == 1
    assert "no budget was reachable" in capsys.readouterr().err


def test_bad_budget_list_is_a_clear_error(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    assert main(["sweep", str(recipe), "--budgets", "half"]) == 2
    assert "--budgets" in capsys.readouterr().err


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_sweep_configs_produce_valid_commands(path):
    config = yaml.safe_load(path.read_text())
    assert config["program"] == "hant" and config["method"] in ("grid", "random", "bayes")
    names = list(config["parameters"])
    grids = [config["parameters"][n]["values"] for n in names]
    for combo in itertools.product(*grids):
        args = [f"--{n}={v}" for n, v in zip(names, combo)]
        command = [a for a in config["command"] if a != "${args}"] + args
        assert command[0] == "hant"
        parsed = build_parser().parse_args(command[1:])
        assert Path(parsed.recipe).is_file()
        if parsed.families:
            assert set(parsed.families.split(",")) <= set(list_families())
