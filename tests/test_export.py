"""A student exported to ONNX runs in ONNX Runtime with torch's outputs at any batch; TorchScript too."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hant.export import export_student
from hant.latency import LatencyTarget
from hant.ops_zoo import build_zoo
from hant.slots import discover_slots
from hant.student import assemble_student, load_student, save_student


@pytest.fixture()
def saved_student(tiny_resnet, tmp_path):
    slots = discover_slots(tiny_resnet, torch.randn(2, 1, 32, 32))
    zoo = build_zoo(tiny_resnet, slots, {"mbconv": {"kernels": [3], "expansions": [2], "se": [True], "acts": ["hardswish"]}})
    choices = {s.name: zoo[s.name][-1] for s in slots}
    student = assemble_student(tiny_resnet, slots, choices)
    desc = {"name": "resnet18", "num_classes": 10, "in_chans": 1, "kwargs": {
        "channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1], "replace_stem_pool": True}}
    save_student(student, tmp_path / "student", desc, slots, choices)
    return load_student(tmp_path / "student")


def test_onnx_matches_torch_in_onnxruntime_at_any_batch(saved_student, tmp_path):
    result = export_student(saved_student, (1, 32, 32), tmp_path / "s", "auto", LatencyTarget(backend="onnxruntime"))
    assert result.path.suffix == ".onnx" and result.max_abs_diff < 1e-4
    x = torch.randn(5, 1, 32, 32)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = saved_student(x).numpy()
    assert got.shape == (5, 10)
    assert np.abs(got - expected).max() < 1e-4


def test_torchscript_reloads_with_the_same_outputs(saved_student, tmp_path):
    result = export_student(saved_student, (1, 32, 32), tmp_path / "s.pt", "auto", LatencyTarget())
    assert result.path.suffix == ".pt"
    loaded = torch.jit.load(str(result.path))
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), saved_student(x), atol=1e-5)
