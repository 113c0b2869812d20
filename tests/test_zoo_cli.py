"""``hant zoo``: on a timm model name (listing, --json, --check, --slots, --plugin) and on a run directory."""

from __future__ import annotations

import json
import textwrap

import pytest
import timm
import yaml
from safetensors.torch import save_file
from tiny import tiny_recipe

from hant.cli.main import main
from hant.cli.zoo import parse_input_size

PLUGIN = '''
from torch import nn
from hant import CandidateFamily, register_family


@register_family("{name}")
class AvgPoolProjection(CandidateFamily):
    """Average-pool to the output size, then a 1x1 projection."""

    def candidates(self, slot):
        return [{{}}] if len(slot.in_shape) == 3 else []

    def build(self, spec, teacher_block=None):
        sig = spec.signature
        return nn.Sequential(nn.AvgPool2d(sig.stride) if sig.stride > 1 else nn.Identity(),
                             nn.Conv2d(sig.in_shape[0], sig.out_shape[0], 1), nn.BatchNorm2d(sig.out_shape[0]))


@register_family("{name}_broken")
class Broken(CandidateFamily):
    """Ignores the stride (wrong output shape where it is 2) and has a tuple parameter."""

    def candidates(self, slot):
        return [{{"k": (1, 1)}}] if len(slot.in_shape) == 3 else []

    def build(self, spec, teacher_block=None):
        sig = spec.signature
        return nn.Conv2d(sig.in_shape[0], sig.out_shape[0], 1)
'''




def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_json_lists_slots_with_shapes_kinds_and_counts(capsys):
    args = [
        "zoo",
        "test_vit",
        "--input-size",
        "32",
        "--json",
        "--families",
        "identity,mlp_ratio",
        "--families",
        "fewer_heads",
    ]
    assert main(args) == 0
    out = _json(capsys)
    assert out["model"] == "test_vit" and out["input_size"] == [3, 32, 32]
    assert set(out["slots"][0]) == {"name", "in_shape", "out_shape", "kind", "candidates"}
    assert [s["name"] for s in out["slots"]] == [f"blocks.{i}" for i in range(len(out["slots"]))]
    for s in out["slots"]:
        assert s["kind"] == "transformer_block" and s["in_shape"] == s["out_shape"] == [5, 64]  # cls + 2x2 patches
        # keep, identity, 11 MLP ratios 0.25 to 2.75 (below 3) and 1 head of 2, each by l1, lamp and taylor
        assert s["candidates"] == 1 + 1 + 11 * 3 + 1 * 3
    assert out["candidates"] == sum(s["candidates"] for s in out["slots"])


def test_check_passes_and_prints_a_table(capsys):
    assert (
        main(["zoo", "test_efficientnet", "--input-size", "32", "--check", "--families", "identity,pruned,conv_bn_act"])
        == 0
    )
    out = capsys.readouterr().out
    assert "blocks.0.0" in out and "conv_block" in out
    assert "0 failed" in out and "test_efficientnet:" in out


def test_slot_patterns_from_the_command_line(capsys):
    args = [
        "zoo",
        "test_resnet",
        "--input-size",
        "32",
        "--slots",
        "layer1.*",
        "--slots",
        "fc",
        "--families",
        "identity",
        "--json",
    ]
    assert main(args) == 0
    slots = _json(capsys)["slots"]
    assert [s["name"] for s in slots][-1] == "fc"
    assert all(s["name"].startswith("layer1.") for s in slots[:-1]) and len(slots) >= 2
    assert slots[0]["kind"] == "conv_block" and slots[-1]["kind"] == "module"


def test_model_without_known_blocks_is_a_one_line_error(capsys):
    assert main(["zoo", "test_byobnet", "--input-size", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--slots" in err and "pattern" in err


@pytest.mark.parametrize("argv", [["--input-size", "big"], ["--families", "no_such_family"]])
def test_bad_arguments_are_one_line_errors(argv, capsys):
    assert main(["zoo", "test_resnet", *argv]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_unknown_model_is_an_error(capsys):
    assert main(["zoo", "no_such_model_xyz"]) == 2
    assert "no_such_model_xyz" in capsys.readouterr().err


def test_parse_input_size():
    assert parse_input_size("64") == (64, 64)
    assert parse_input_size("64x48") == (64, 48)
    assert parse_input_size("1,32,32") == (1, 32, 32)


def test_user_family_from_a_plugin_file_shows_up_and_is_checked(tmp_path, capsys, isolated_registry):
    path = tmp_path / "my_family.py"
    path.write_text(textwrap.dedent(PLUGIN.format(name="avgpool_proj")))
    base = ["zoo", "test_resnet", "--input-size", "32", "--plugin", str(path)]
    # with no --families every registered family is listed, the plugin's included
    assert main([*base, "--json"]) == 0
    assert all(s["candidates"] > 2 for s in _json(capsys)["slots"])
    assert main([*base, "--json", "--families", "avgpool_proj", "--check"]) == 0
    out = _json(capsys)
    assert all(s["candidates"] == 2 for s in out["slots"])  # keep + the user's family
    assert out["check"]["failures"] == [] and out["check"]["candidates"] == 2 * len(out["slots"])
    # a broken family: every failure is reported by slot and key, and the exit status is 1
    assert main([*base, "--families", "avgpool_proj_broken", "--check", "--json"]) == 1
    failures = _json(capsys)["check"]["failures"]
    assert failures and all(f["key"] == "avgpool_proj_broken[k=(1, 1)]" for f in failures)
    assert all("round trip" in f["error"] for f in failures)


def test_run_directory_still_runs_the_zoo_stage(tmp_path, capsys):
    # a checkpoint instead of training keeps the teacher stage short
    t = tiny_recipe()["teacher"]
    model = timm.create_model(t["model"], num_classes=10, in_chans=1, **t["kwargs"])
    save_file(model.state_dict(), str(tmp_path / "teacher.safetensors"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(teacher={**t, "checkpoint": str(tmp_path / "teacher.safetensors")})))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert main(["zoo", str(run_dir), "--recipe", str(recipe)]) == 0
    assert (run_dir / "zoo.json").is_file()
    assert "[zoo]" in capsys.readouterr().out
    assert main(["zoo", str(run_dir), "--slots", "layer1.*"]) == 2
    assert "--slots" in capsys.readouterr().err
