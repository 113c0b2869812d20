"""Stream-width scores: the teacher with one stream cut, its dropped channels predicted from the kept ones."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from hant.distill.stream_scores import compensated, score_streams, stream_points
from hant.pruning.streams import StreamLayout
from hant.slots import discover_slots, get_submodule


def _loader(n: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(torch.randn(n, 1, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)),
                      batch_size=16)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1, replace_stem_pool=True).eval()
    slots = discover_slots(model, torch.randn(2, 1, 32, 32))
    layout = StreamLayout.trace(model, (1, 32, 32), [s.path for s in slots])
    return model, slots, layout


def _duplicate_second_half(model: torch.nn.Module, paths: list[str]) -> None:
    """Make the channels ``c/2:`` written by the convs and norms at ``paths`` copies of ``:c/2``."""
    with torch.no_grad():
        for path in paths:
            module = get_submodule(model, path)
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(module, name, None)
                if t is not None:
                    half = t.shape[0] // 2
                    t[half:] = t[:half]


def test_every_stream_is_seen_where_slots_read_or_write_it(resnet) -> None:
    _, slots, layout = resnet
    points = stream_points(layout, slots)
    g = layout.slot_streams("layer1.0")[0]
    assert points[g] == [("layer1.0", "in"), ("layer1.0", "out"), ("layer1.1", "in"), ("layer1.1", "out"), ("layer2.0", "in")]
    assert set(points) == set(layout.streams())


def test_a_stream_whose_dropped_channels_copy_kept_ones_costs_nothing(resnet) -> None:
    model, slots, layout = resnet
    model = copy.deepcopy(model)
    g = layout.slot_streams("layer1.0")[0]
    _duplicate_second_half(model, ["maxpool.0", "maxpool.1", "layer1.0.conv2", "layer1.0.bn2", "layer1.1.conv2", "layer1.1.bn2"])
    half = layout.width(g) // 2
    scores = score_streams(model, layout, slots, {g: [half, half // 2]}, _loader(64, 0), _loader(48, 1),
                           torch.device("cpu"))
    assert set(scores) == {g} and set(scores[g]) == {half, half // 2}
    exact, lossy = scores[g][half], scores[g][half // 2]
    assert exact.feature_loss < 1e-6 and exact.swap_kl < 1e-6
    assert lossy.feature_loss > 1e-2 and lossy.swap_kl > max(1e-6, 10 * exact.swap_kl)
    with torch.no_grad():  # zeroing the copies, as a swapped-in block would, is not free
        x = next(iter(_loader(48, 1)))[0]
        ref = model(x)
        s = model.maxpool(model.act1(model.bn1(model.conv1(x))))
        zeroed = model.layer1(torch.cat([s[:, :half], torch.zeros_like(s[:, half:])], 1))
        assert not torch.allclose(zeroed, model.layer1(s), atol=1e-3)
        assert torch.allclose(ref, model(x))  # the hooks are gone


def test_widths_that_are_not_narrower_are_not_scored(resnet) -> None:
    model, slots, layout = resnet
    g = layout.streams()[0]
    assert score_streams(model, layout, slots, {g: [layout.width(g)]}, _loader(16, 0), _loader(16, 1),
                         torch.device("cpu")) == {}


def test_the_head_compensates_for_a_cut_stream_as_it_was_scored(resnet) -> None:
    model, slots, layout = resnet
    model = copy.deepcopy(model)
    g = layout.slot_streams("layer4.1")[1]
    _duplicate_second_half(model, ["layer4.0.conv2", "layer4.0.bn2", "layer4.0.downsample.0", "layer4.0.downsample.1",
                                   "layer4.1.conv2", "layer4.1.bn2"])
    counts = {g: layout.width(g) // 2}
    x = next(iter(_loader(16, 1)))[0]
    with torch.no_grad():
        ref = model(x)
        plain = layout.cut(model, counts)(x)
        folded_teacher = compensated(model, layout, slots, counts, _loader(640, 0), torch.device("cpu"), fit_batches=40)
        folded = layout.cut(folded_teacher, counts)(x)
    assert not torch.allclose(plain, ref, atol=1e-3)  # the classifier lost half its inputs
    torch.testing.assert_close(folded, ref, atol=1e-3, rtol=1e-3)
    for name, p in model.named_parameters():  # only layers outside the slots change
        if not name.startswith("fc."):
            torch.testing.assert_close(p, folded_teacher.get_parameter(name))
