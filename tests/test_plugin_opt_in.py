"""Plugins are code: nothing a student's arch.json or a recipe's zoo.plugins names is imported
unless the caller allows it (load_student(..., allow_plugins=True), --allow-plugins)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny import tiny_recipe

import hant
from hant.cli.main import main
from hant.config import recipe_from_dict
from hant.errors import PluginError, ZooError
from hant.models import create_model
from hant.pipeline import Context, RunDir
from hant.pipeline.dryrun import dry_run
from hant.student import save_student

MODEL = {"name": "resnet18", "num_classes": 10, "in_chans": 1, "kwargs": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1]}}


def _saved_student(path: Path) -> None:
    """A student that replaces nothing: the teacher's architecture, saved with random weights."""
    model = create_model(MODEL["name"], MODEL["num_classes"], MODEL["in_chans"], MODEL["kwargs"])
    save_student(model, path, MODEL, [], {})


def _marker_plugin(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A plugin file whose only effect, when executed, is to create a marker file."""
    marker = tmp_path / f"{name}.ran"
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('executed')\n")
    return plugin, marker


def test_load_student_refuses_plugins_unless_allowed(tmp_path, isolated_registry):
    _saved_student(tmp_path / "s")
    plugin, marker = _marker_plugin(tmp_path, "evil_student_plugin")
    arch_file = tmp_path / "s" / "arch.json"
    arch = json.loads(arch_file.read_text())
    arch["plugins"] = [str(plugin)]
    arch_file.write_text(json.dumps(arch))
    with pytest.raises(PluginError, match="allow_plugins=True"):
        hant.load_student(tmp_path / "s")
    assert not marker.exists()
    hant.load_student(tmp_path / "s", allow_plugins=True)
    assert marker.read_text() == "executed"


def test_context_refuses_recipe_plugins_unless_allowed(tmp_path, isolated_registry):
    plugin, marker = _marker_plugin(tmp_path, "evil_recipe_plugin")
    recipe = recipe_from_dict(tiny_recipe(zoo={"plugins": [str(plugin)]}))
    with pytest.raises(PluginError, match="--allow-plugins"):
        Context(recipe, RunDir(tmp_path / "run"))
    assert not marker.exists()
    Context(recipe, RunDir(tmp_path / "run"), allow_plugins=True)
    assert marker.exists()


def test_dry_run_checks_plugins_exist_without_importing_them(tmp_path, isolated_registry):
    plugin, marker = _marker_plugin(tmp_path, "evil_dry_plugin")
    families = {"identity": {}, "not_registered_family": {}}
    report = dry_run(recipe_from_dict(tiny_recipe(zoo={"plugins": [str(plugin)], "families": families})))
    assert not marker.exists()
    assert any("not_registered_family" in w and "--allow-plugins" in w for w in report.warnings)
    with pytest.raises(ZooError, match="nowhere.py"):
        dry_run(recipe_from_dict(tiny_recipe(zoo={"plugins": [str(tmp_path / "nowhere.py")]})))


def test_cli_dry_run_imports_plugins_only_with_allow_plugins(tmp_path, isolated_registry, capsys):
    plugin, marker = _marker_plugin(tmp_path, "evil_cli_plugin")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump(tiny_recipe(zoo={"plugins": [str(plugin)], "families": {"identity": {}}})))
    assert main(["run", str(recipe_file), "--dry-run"]) == 0
    assert "were not imported" in capsys.readouterr().out and not marker.exists()
    assert main(["run", str(recipe_file), "--run-dir", str(tmp_path / "run")]) == 2
    assert "--allow-plugins" in capsys.readouterr().err and not marker.exists()
    assert main(["run", str(recipe_file), "--dry-run", "--allow-plugins"]) == 0
    assert marker.exists()
