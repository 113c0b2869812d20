"""Reordering a network's channel groups by importance keeps its function, and its first channels
are then the most important ones."""
from __future__ import annotations

import pytest
import timm
import torch

from hant.errors import PruneError
from hant.pruning.apply import first_channels, pruned_copy
from hant.pruning.groups import trace_groups
from hant.pruning.importance import weight_importance
from hant.pruning.reorder import importance_order, reorder_groups
from hant.pruning.state import top_keeps
from hant.slots import discover_slots


def traced(name: str, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=1, **kwargs).eval()
    with torch.no_grad():  # non-trivial norm statistics, so that a missed buffer shows in the output
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 1, 32, 32)
    slots = discover_slots(model, x)
    return model, x, trace_groups(model, x, [s.path for s in slots])


@pytest.mark.parametrize("name,kwargs", [("resnet18", {"replace_stem_pool": True}), ("mobilenetv2_100", {}),
                                         ("tf_efficientnet_lite0", {})])
def test_reordered_network_computes_the_same(name, kwargs) -> None:
    model, x, graph = traced(name, **kwargs)
    groups = [g for g in graph.groups.values() if not g.fixed]
    orders = {g.name: torch.randperm(g.width, generator=torch.Generator().manual_seed(i)) for i, g in enumerate(groups)}
    moved = reorder_groups(model, graph.groups, orders)
    with torch.no_grad():
        assert not torch.equal(model.get_submodule(groups[0].producers[0]).weight,
                               moved.get_submodule(groups[0].producers[0]).weight)
        torch.testing.assert_close(moved(x), model(x), rtol=1e-4, atol=1e-4)


def test_first_channels_of_the_reordered_network_are_the_most_important() -> None:
    model, x, graph = traced("resnet18", replace_stem_pool=True)
    importance = weight_importance(model, graph.streams(), "l1")
    moved = reorder_groups(model, graph.groups, {g: importance_order(s) for g, s in importance.items()})
    counts = {g: s.numel() // 2 for g, s in importance.items()}
    by_index = pruned_copy(model, graph.groups, top_keeps(importance, counts, {g: 1 for g in counts}))
    by_order = pruned_copy(moved, graph.groups, first_channels(counts))
    with torch.no_grad():
        torch.testing.assert_close(by_order(x), by_index(x), rtol=1e-4, atol=1e-4)


def test_an_order_that_is_not_a_permutation_is_refused() -> None:
    model, _, graph = traced("resnet18", replace_stem_pool=True)
    g = graph.streams()[0]
    with pytest.raises(PruneError, match="not a permutation"):
        reorder_groups(model, graph.groups, {g.name: torch.zeros(g.width, dtype=torch.long)})
