"""A stage whose outputs exist but are damaged is redone, never trusted as up to date."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny import tiny_recipe

from hant.config import recipe_from_dict
from hant.errors import FileFormatError
from hant.io import check_tensors, load_tensors, read_json
from hant.pipeline import Context, RunDir, run_stages

RECIPE = tiny_recipe(teacher={"train": {"epochs": 1, "lr": 0.1}})


def _run(root: Path, upto: str) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    ctx = Context(recipe_from_dict(RECIPE), RunDir(root))
    run_stages(ctx, upto, on_event=lambda stage, event, info: events.append((stage, event)))
    return events


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    _run(root, "distill")
    _run(root, "profile")
    return root


@pytest.fixture()
def run_copy(base_run, tmp_path) -> Path:
    shutil.copytree(base_run, tmp_path / "run")
    return tmp_path / "run"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("stage, file", [("slots", "slots.json"), ("zoo", "zoo.json"), ("distill", "scores.json")])
def test_a_truncated_json_output_is_redone(run_copy, stage, file):
    before = (run_copy / file).read_text()
    _truncate(run_copy / file)
    events = _run(run_copy, stage)
    assert (stage, "damaged") in events and (stage, "finished") in events
    assert (run_copy / file).read_text() == before
    assert all(event == "skipped" for _, event in _run(run_copy, stage))


def test_an_empty_latency_table_is_remeasured(run_copy):
    (run_copy / "latency.json").write_text("[]")
    events = _run(run_copy, "profile")
    assert ("profile", "damaged") in events and ("profile", "finished") in events
    assert read_json(run_copy / "latency.json")["entries"]


def test_a_truncated_candidate_is_named_and_retrained(run_copy):
    weights = sorted((run_copy / "distill" / "candidates").glob("*.safetensors"))[0]
    _truncate(weights)
    with pytest.raises(FileFormatError, match=weights.name):
        load_tensors(weights)
    events = _run(run_copy, "distill")
    assert ("distill", "damaged") in events and ("distill", "finished") in events
    assert check_tensors(weights) is None
    load_tensors(weights)
