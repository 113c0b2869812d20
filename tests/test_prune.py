"""Whole-network pruning: coupled groups, cuts, the linked width program, HALP and SP-LAMP pieces."""
from __future__ import annotations

import copy

import pytest
import timm
import torch

from hant.pruning.groups import trace_groups
from hant.pruning.halp import step_targets
from hant.pruning.importance import GradientImportance, lamp_filter_scores
from hant.pruning.space import STREAM_PREFIX, PruneSpace
from hant.pruning.splamp import splamp_counts
from hant.pruning.state import PruningState
from hant.search import solve
from hant.slots import discover_slots


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1, replace_stem_pool=True).eval()
    x = torch.randn(2, 1, 32, 32)
    slots = discover_slots(model, x)
    return model, x, slots, trace_groups(model, x, [s.path for s in slots])


def macs_space(model, x, slots, graph, fractions=(1.0, 0.5, 0.25)) -> PruneSpace:
    """A space whose lookup table is a latency model (parameter count) instead of measurements."""
    space = PruneSpace(graph, slots, fractions)
    lat = {}
    for uid, obj, _ in space.entries(model, (1, 32, 32))[1:]:
        lat[uid] = sum(p.numel() for p in obj().parameters()) / 1e4
    teacher_ms = sum(p.numel() for p in model.parameters()) / 1e4 + 1.0
    space.set_latencies(model, lat, teacher_ms)
    return space


def test_resnet_streams_and_inner_groups(resnet) -> None:
    model, x, slots, graph = resnet
    streams = graph.streams()
    assert [g.width for g in streams] == [64, 128, 256, 512]
    layer2 = next(g for g in streams if g.width == 128)
    assert "layer2.0.downsample.0" in layer2.producers and "layer3.0.downsample.0" in layer2.consumers
    assert all(len(graph.inner(s.path)) == 1 for s in slots)
    assert graph.slot_inputs["layer2.0"] != graph.slot_outputs["layer2.0"]
    assert graph.slot_inputs["layer2.1"] == graph.slot_outputs["layer2.1"]  # an identity residual block
    logits = next(g for g in graph.groups.values() if "fc" in g.producers)
    assert logits.fixed


def test_cut_network_runs_with_every_group_narrower(resnet) -> None:
    model, x, slots, graph = resnet
    state = PruningState(model, x, [s.path for s in slots])
    scores = {g.name: torch.rand(g.width) for g in graph.groups.values() if not g.fixed}
    small = state.cut(scores, {g: max(8, s.numel() // 2) for g, s in scores.items()})
    assert small.model(x).shape == (2, 10)
    assert sum(p.numel() for p in small.model.parameters()) < 0.4 * sum(p.numel() for p in model.parameters())
    widths = small.counts(list(scores))
    assert all(widths[g] == max(8, scores[g].numel() // 2) for g in scores)


def test_efficientnet_groups_cut_through_squeeze_excitation() -> None:
    model = timm.create_model("efficientnet_b0", num_classes=10, in_chans=1).eval()
    x = torch.randn(2, 1, 32, 32)
    slots = discover_slots(model, x)
    state = PruningState(model, x, [s.path for s in slots])
    graph = state.graph()
    assert len(graph.streams()) >= 7
    scores = {g.name: torch.rand(g.width) for g in graph.groups.values() if not g.fixed}
    small = state.cut(scores, {g: max(1, s.numel() // 2) for g, s in scores.items()})
    assert small.model(x).shape == (2, 10)


def test_linked_program_keeps_each_stream_one_width(resnet) -> None:
    model, x, slots, graph = resnet
    space = macs_space(model, x, slots, graph)
    scores = lamp_filter_scores(model, graph.groups.values())
    problem, links = space.problem(scores, 0.2 * space.teacher_ms)
    selection = solve(problem)
    counts = space.decode(selection.choices)
    for slot in slots:
        for stream in space.slot_streams(slot):
            assert f"{stream}={counts[stream]}" in selection.choices[slot.name]
    assert any(counts[s] < graph.groups[s].width for s in space.streams())  # residual widths are pruned too
    assert space.predict_ms(counts) == pytest.approx(selection.predicted_latency_ms)
    assert space.predict_ms(counts) <= 0.2 * space.teacher_ms
    assert any(name.startswith(STREAM_PREFIX) for name in selection.choices)


def test_splamp_meets_budget_and_prunes_least_at_loose_budgets(resnet) -> None:
    model, x, slots, graph = resnet
    space = macs_space(model, x, slots, graph)
    scores = lamp_filter_scores(model, graph.groups.values())
    tight = splamp_counts(space, scores, 0.4 * space.teacher_ms)
    loose = splamp_counts(space, scores, 0.8 * space.teacher_ms)
    assert space.predict_ms(tight) <= 0.4 * space.teacher_ms
    assert all(loose[g] >= tight[g] for g in tight)
    assert min(tight.values()) >= 8  # every layer keeps at least one neuron group


def test_budgets_are_fractions_of_the_tables_teacher(resnet) -> None:
    """The table's parts, timed alone, need not add up to the measured teacher; a budget of 1.0 times
    the table's own teacher keeps every channel, one of the measured teacher (here less) does not."""
    model, x, slots, graph = resnet
    space = macs_space(model, x, slots, graph)
    space.teacher_ms = 0.5 * space.predicted_teacher_ms
    scores = lamp_filter_scores(model, graph.groups.values())
    assert splamp_counts(space, scores, space.predicted_teacher_ms) == space.full_counts()
    assert splamp_counts(space, scores, space.teacher_ms) != space.full_counts()


def test_lamp_filter_scores_are_per_layer_normalised(resnet) -> None:
    model, x, slots, graph = resnet
    inner = graph.inner("layer1.0")[0]
    s = lamp_filter_scores(model, [inner])[inner.name]
    assert s.max().item() == pytest.approx(1.0)  # a layer's largest filter scores 1


def test_bn_taylor_averages_over_updates(resnet) -> None:
    model, x, slots, graph = resnet
    net = copy.deepcopy(model).train()
    sal = GradientImportance(net, graph.groups.values(), "bn_taylor")
    for _ in range(2):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x), torch.tensor([1, 2])).backward()
        sal.update()
    scores = sal.scores()
    assert sal.steps == 2
    assert all((v >= 0).all() and v.numel() == graph.groups[k].width for k, v in scores.items())
    assert any(v.sum() > 0 for v in scores.values())


def test_halp_targets_fall_linearly_to_the_budget() -> None:
    assert step_targets(10.0, 4.0, 3) == pytest.approx([8.0, 6.0, 4.0])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")])])
def test_halp_trains_on_the_given_device(resnet, device: str) -> None:
    """Every training step of HALP runs on ``device`` (the KD teacher there too, or the step would
    fail); the pruned network comes back on the CPU, narrower than the teacher."""
    from torch.utils.data import DataLoader, TensorDataset

    from hant.pruning.halp import HalpSchedule, halp_prune

    model, x, slots, graph = resnet
    teacher = copy.deepcopy(model)
    seen: set[str] = set()
    teacher.conv1.register_forward_pre_hook(lambda m, args: seen.add(args[0].device.type) if m.training else None)
    space = macs_space(teacher, x, slots, graph)
    data = TensorDataset(torch.randn(16, 1, 32, 32), torch.randint(0, 10, (16,)))
    budget = 0.5 * space.predicted_teacher_ms
    pruned = halp_prune(teacher, space, x, DataLoader(data, batch_size=8), budget, HalpSchedule(steps=2), device=device)
    assert seen == {device}
    assert next(pruned.parameters()).device.type == "cpu" and pruned(x).shape == (2, 10)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
