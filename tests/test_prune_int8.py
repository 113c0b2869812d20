"""Pruning for an int8 target: every network the width table and the fit rounds time is quantized on
the task's own inputs to it (as deployed), and without such inputs pruning refuses in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hant.config import recipe_from_dict
from hant.data import digits_splits
from hant.distill.capture import SlotCapture
from hant.errors import DeployError
from hant.latency import LatencyTarget
from hant.pruning.apply import first_channels, pruned_copy
from hant.pruning.groups import trace_groups
from hant.pruning.run import build_space, prune_to_budget
from hant.pruning.space import PruneSpace
from hant.pruning.verify import fit_to_fraction
from hant.slots import discover_slots, structure_hash

SHAPE = (1, 32, 32)
INT8 = {"device": "cpu", "backend": "openvino", "dtype": "int8", "batch_size": 4, "threads": 1}


@pytest.fixture()
def pruning(tiny_resnet):
    x = torch.randn(2, *SHAPE)
    slots = discover_slots(tiny_resnet, x)
    space = PruneSpace(trace_groups(tiny_resnet, x, [s.path for s in slots]), slots, (1.0, 0.5), divisor=4)
    images = digits_splits(SHAPE[-1]).train.tensors[0][:INT8["batch_size"]].numpy()
    return tiny_resnet, space, images


def test_every_table_entry_calibrates_on_its_input_in_the_task(pruning) -> None:
    model, space, images = pruning
    calibration = space.calibration(model, images)
    entries = space.entries(model, SHAPE)
    assert set(calibration) == {uid for uid, _, _ in entries}
    with SlotCapture(model, space.slots) as capture:
        teacher_inputs = {name: io[0].numpy() for name, io in capture.run(torch.from_numpy(images)).items()}
    assert np.array_equal(calibration[entries[0][0]], images)  # the teacher
    for counts in space.outside_candidates():
        assert np.array_equal(calibration[space.outside_uid(structure_hash(model), counts)], images)
    full, narrowed = space.full_counts(), 0
    for slot in space.slots:
        for counts in space.slot_candidates(slot):
            uid, factory, shape = next(e for e in entries if e[0] == space.slot_uid(slot, structure_hash(model.get_submodule(slot.path)), counts))
            samples = calibration[uid]
            assert samples.shape == (len(images), *shape)
            if all(counts[g] == full[g] for g in space.graph.slot_inputs[slot.path] if g in counts):
                np.testing.assert_array_equal(samples, teacher_inputs[slot.name])
            else:  # the block's input in the network cut to its widths
                narrowed += 1
                cut = pruned_copy(model, space.graph.groups, first_channels(counts))
                with SlotCapture(cut, [slot]) as capture:
                    np.testing.assert_array_equal(samples, capture.run(torch.from_numpy(images))[slot.name][0].numpy())
            factory()(torch.from_numpy(samples))  # the cut block runs on it
    assert narrowed > 0


def test_fit_rounds_time_teacher_and_student_quantized_on_the_task(pruning) -> None:
    model, space, images = pruning
    target = LatencyTarget(**INT8)
    student = pruned_copy(model, space.graph.groups, first_channels({g: n // 2 for g, n in space.full_counts().items()}))
    fit = fit_to_fraction(lambda _: student, model, SHAPE, target, 0.9, 1.0, rounds=1, calibration=images,
                          time_budget_s=1, min_reps=3)
    assert len(fit.rounds) == 1 and fit.rounds[0]["student_ms"] > 0 and fit.result is student


def test_int8_pruning_without_calibration_refuses_in_one_line(tiny_resnet) -> None:
    recipe = recipe_from_dict({"name": "int8", "target": INT8, "prune": {"fractions": [1.0, 0.5], "divisor": 4}})
    slots = discover_slots(tiny_resnet, torch.randn(2, *SHAPE))
    with pytest.raises(DeployError, match="no calibration data") as e:
        build_space(recipe, tiny_resnet, slots, SHAPE)
    assert "\n" not in str(e.value)
    space = build_space(recipe, tiny_resnet, slots, SHAPE, latency_ms={}, teacher_ms=1.0)  # a table read back
    with pytest.raises(DeployError, match="no calibration data"):
        prune_to_budget(recipe, tiny_resnet, space, 0.5, SHAPE)
