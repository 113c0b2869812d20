"""Whole-network pruning across architectures: timm's ResNet, EfficientNet, MobileNetV2/V3, RegNet,
ViT and DenseNet, conv -> Flatten -> Linear and an Inception-style concatenation block. Each is cut
at the widths a budget picks; the cut network runs, keeps the output shape, and every slot and layer
has the shape the width program predicted. Groups that cannot be cut are kept whole with a reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import yaml

from hant import load_student
from hant.cli import main
from hant.errors import PruneError
from hant.ops_zoo import load_plugins
from hant.pruning.apply import pruned_copy
from hant.pruning.groups import check_prunable, trace_groups
from hant.pruning.importance import lamp_filter_scores
from hant.pruning.space import PruneSpace
from hant.pruning.splamp import splamp_counts
from hant.pruning.state import top_keeps
from hant.slots import discover_slots

PLUGIN = str(Path(__file__).with_name("prune_models.py"))

MODELS = {
    "test_resnet": ({}, None),
    "test_efficientnet": ({}, None),
    "mobilenetv2_035": ({}, None),
    "mobilenetv3_small_050": ({}, None),
    "regnetx_002": ({}, None),
    "resnext50_32x4d": ({"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128), "cardinality": 4, "base_width": 16}, None),
    "test_vit": ({"img_size": 16}, None),
    "densenet121": ({"block_config": (2, 2), "growth_rate": 8}, ["features.denseblock*"]),
    "prune_test_flatten": ({}, ["blocks.*"]),
    "prune_test_inception": ({}, ["blocks.*"]),
}


def param_latency(space: PruneSpace, model: torch.nn.Module, shape: tuple[int, ...]) -> None:
    """A lookup table whose latency model is the parameter count (no measurement)."""
    lat = {uid: sum(p.numel() for p in obj().parameters()) / 1e4 for uid, obj, _ in space.entries(model, shape)[1:]}
    space.set_latencies(model, lat, sum(p.numel() for p in model.parameters()) / 1e4)


def slot_shapes(model: torch.nn.Module, slots, x: torch.Tensor) -> dict[str, tuple]:
    shapes, handles = {}, []
    for s in slots:
        def hook(m, args, out, path=s.path):
            shapes[path] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
        handles.append(model.get_submodule(s.path).register_forward_hook(hook))
    with torch.no_grad():
        y = model(x)
    for h in handles:
        h.remove()
    return {"output": tuple(y.shape), **shapes}


@pytest.mark.parametrize("name", list(MODELS))
def test_cut_network_runs_with_the_predicted_shapes(name: str) -> None:
    load_plugins([PLUGIN])
    kwargs, patterns = MODELS[name]
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=1, **kwargs).eval()
    x = torch.randn(2, 1, 16, 16)
    slots = discover_slots(model, x, patterns)
    graph = trace_groups(model, x, [s.path for s in slots])
    check_prunable(graph, name)
    space = PruneSpace(graph, slots, (1.0, 0.5), divisor=2)
    param_latency(space, model, (1, 16, 16))
    scores = lamp_filter_scores(model, graph.groups.values())
    counts = splamp_counts(space, scores, 0.6 * space.predicted_teacher_ms)
    assert any(counts[g] < graph.groups[g].width for g in counts), "something was pruned"
    cut = pruned_copy(model, graph.groups, top_keeps(scores, counts, {g: graph.groups[g].unit for g in counts})).eval()
    got = slot_shapes(cut, slots, x)
    assert got["output"] == (2, 10)
    for s in slots:
        assert got[s.path] == (space.slot_shape(s, counts), space.slot_shape(s, counts, output=True)), s.path
    for g, n in counts.items():
        for path in graph.groups[g].producers:
            layer = cut.get_submodule(path)
            assert (layer.out_channels if hasattr(layer, "out_channels") else layer.out_features) == n, path
    assert space.predict_ms(counts) <= 0.6 * space.predicted_teacher_ms


def _graph(name: str):
    kwargs, patterns = MODELS[name]
    model = timm.create_model(name, num_classes=10, in_chans=1, **kwargs).eval()
    x = torch.randn(2, 1, 16, 16)
    return trace_groups(model, x, [s.path for s in discover_slots(model, x, patterns)])


def test_frozen_groups_say_why() -> None:
    """Concatenations with more streams than a slot's widths enumerate and attention heads are kept
    whole, each with its reason; the rest of the network is still pruned."""
    load_plugins([PLUGIN])
    reasons = {name: " | ".join(_graph(name).frozen().values()) for name in ("densenet121", "test_vit")}
    assert "a concatenation" in reasons["densenet121"]
    assert "breaks the forward pass" in reasons["test_vit"]  # qkv: heads of a fixed size


def test_grouped_convolutions_drop_whole_groups() -> None:
    """RegNet's grouped 3x3 passes its group through, kept in whole convolution groups."""
    graph = _graph("regnetx_002")
    grouped = [g for g in graph.groups.values() if g.unit > 1]
    assert grouped and not any(g.fixed for g in grouped)
    assert all(any(graph.groups[g.name].kinds[p] == "depthwise" for p in g.paths) for g in grouped)


def test_flatten_into_linear_cuts_the_expanded_features() -> None:
    """The channels of a conv flattened into a linear layer are cut there at every spatial position."""
    load_plugins([PLUGIN])
    model = timm.create_model("prune_test_flatten", num_classes=10, in_chans=1).eval()
    x = torch.randn(2, 1, 16, 16)
    graph = trace_groups(model, x, ["blocks.0", "blocks.1"])
    stream = graph.groups["blocks.1.0"]
    assert stream.is_stream and "head.1" in stream.consumers
    cut = pruned_copy(model, graph.groups, {"blocks.1.0": torch.arange(0, 32, 2)})
    assert cut.head[1].in_features == 16 * 4 * 4 and cut(x).shape == (2, 10)


def test_a_network_without_prunable_groups_is_refused_in_one_line() -> None:
    """Its only conv's channels are the network's output."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(2, 1, 16, 16)
    with pytest.raises(PruneError, match="has no channel group that hant can prune .it feeds the network's output.$"):
        check_prunable(trace_groups(model, x, ["0"]), "tiny")


RECIPE = {
    "data": {"dataset": "digits", "image_size": 16, "batch_size": 64},
    "teacher": {"train": {"epochs": 1, "lr": 0.05}},
    "target": {"device": "cpu", "backend": "torch", "batch_size": 8, "threads": 1},
    "profile": {"rel_precision": 0.2, "time_budget_s": 1},
    "search": {"budget": 0.8, "margin": 0.0, "verify_rounds": 3},
    "finetune": {"epochs": 1, "lr": 0.01},
    "prune": {"method": "splamp", "fractions": [1.0, 0.5], "divisor": 2},
    "zoo": {"plugins": [PLUGIN]},
    "wandb": {"mode": "off"},
}


# with tests/test_prune_cli.py's resnet18, five timm models go through `hant prune` end to end
@pytest.mark.parametrize(
    "name", ["prune_test_flatten", "prune_test_inception", "densenet121", "test_efficientnet", "resnext50_32x4d", "test_vit"],
)
def test_hant_prune_end_to_end(tmp_path, capsys, name: str) -> None:
    kwargs, patterns = MODELS[name]
    recipe = {**RECIPE, "name": name, "teacher": {**RECIPE["teacher"], "model": name, "kwargs": kwargs},
              "slots": {"patterns": patterns or []}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(recipe))))
    run = tmp_path / "run"
    assert main(["prune", str(path), "--run-dir", str(run), "--allow-plugins"]) == 0, capsys.readouterr().err
    record = json.loads((run / "pruned" / "prune.json").read_text())
    assert any(record["counts"][g] < record["full_counts"][g] for g in record["counts"])
    report = json.loads((run / "report.json").read_text())
    assert report["student"]["latency_ms"] > 0 and (run / "report.md").is_file()
    net = load_student(run / "student", allow_plugins=True)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 10)
