"""Deployment: precision plans, the runtimes' own int8 quantizers on real calibration data, artifacts."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from hant.config import recipe_from_dict
from hant.data import digits_images, digits_splits
from hant.deploy import PrecisionPlan, deploy_onnx, deployed_module, export_onnx, load_artifact, scope_prefix
from hant.deploy.quantize import calibration_batches
from hant.errors import ConfigError, DeployError, LatencyError
from hant.export import export_student
from hant.latency import LatencyTarget, SlotOptions, device_fingerprint, measure, profile_network
from hant.latency.isa import native_bf16
from hant.pipeline.calibration_data import slot_inputs
from hant.slots import discover_slots

FAST = dict(time_budget_s=2.0, min_reps=3, max_reps=20, warmup=1, min_sample_ms=0.5)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    ).eval()


def images(n: int = 32) -> np.ndarray:
    """Smooth, structured inputs (not white noise), as calibration data should be."""
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.randn(n, 3, 20, 20, generator=g), 5, stride=1)
    return x.numpy()


# -- plans ---------------------------------------------------------------------------------------


def test_a_plan_keeps_only_the_paths_that_differ_and_maps_them_to_onnx_node_names():
    plan = PrecisionPlan.of("float32", {"layer1.0": "int8", "layer2": "float32"})
    assert plan.overrides == (("layer1.0", "int8"),) and plan.uses_int8 and plan.float_dtype == "float32"
    assert scope_prefix("layer1.0") == "/layer1/layer1.0/"
    assert plan.quantized_node("/layer1/layer1.0/conv1/Conv") and not plan.quantized_node("/layer1/layer1.1/conv1/Conv")
    inverse = PrecisionPlan.of("int8", {"layer1.0": "float32"})
    assert not inverse.quantized_node("/layer1/layer1.0/conv1/Conv") and inverse.quantized_node("/conv1/Conv")
    assert PrecisionPlan.from_dict(plan.to_dict()) == plan and plan.describe() == "float32, int8 in 1 module"


def test_two_floating_precisions_in_one_network_are_refused():
    with pytest.raises(DeployError, match="one floating"):
        PrecisionPlan.of("float32", {"a": "bfloat16"})


# -- targets and errors --------------------------------------------------------------------------


def test_targets_accept_the_precisions_their_runtime_runs_and_name_the_choices_otherwise():
    assert LatencyTarget(backend="openvino", dtype="int8").exports_onnx
    assert LatencyTarget(backend="onnxruntime", dtype="int8").dtype == "int8"
    assert LatencyTarget(backend="torch", dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(ConfigError, match="does not run dtype int8.*openvino"):
        LatencyTarget(backend="torch", dtype="int8")
    with pytest.raises(ConfigError, match="CPU only"):
        LatencyTarget(backend="openvino", device="cuda:0")
    with pytest.raises(ConfigError, match="float16"):
        LatencyTarget(backend="openvino", dtype="float16")


def test_the_int8_quantizer_is_named_only_where_it_feeds_the_backend_and_keys_the_cache_only_when_set():
    assert LatencyTarget(backend="openvino", dtype="int8", quantizer="onnxruntime").quantizer == "onnxruntime"
    with pytest.raises(ConfigError, match="nncf does not feed backend onnxruntime"):
        LatencyTarget(backend="onnxruntime", quantizer="nncf")
    with pytest.raises(ConfigError, match="unknown int8 quantizer 'ptq'"):
        LatencyTarget(backend="openvino", quantizer="ptq")
    plain, qdq = LatencyTarget(backend="openvino", dtype="int8"), LatencyTarget(backend="openvino", dtype="int8", quantizer="onnxruntime")
    assert "quantizer" not in plain.to_dict() and "quantizer" not in repr(plain)
    assert plain.canonical_json() != qdq.canonical_json() and repr(plain) != repr(qdq)
    assert LatencyTarget.from_dict(qdq.to_dict()) == qdq and "int8 by onnxruntime" in qdq.describe()
    assert "onnxruntime" in device_fingerprint(qdq) and "onnxruntime" not in device_fingerprint(plain)


@pytest.mark.skipif(native_bf16(), reason="this CPU has native bf16")
def test_bf16_in_openvino_on_a_cpu_without_native_bf16_is_one_clear_line():
    with pytest.raises(LatencyError, match="no native bf16"):
        measure([("m", net(), (3, 16, 16))], LatencyTarget(backend="openvino", dtype="bfloat16"), **FAST)


def test_int8_without_calibration_data_is_refused():
    with pytest.raises(DeployError, match="calibration data"):
        measure([("m", net(), (3, 16, 16))], LatencyTarget(backend="openvino", dtype="int8"), **FAST)


def test_a_mixed_plan_on_torch_is_refused():
    with pytest.raises(LatencyError, match="mixed precision"):
        measure([("m", net(), (3, 16, 16))], LatencyTarget(), plans={"m": PrecisionPlan("int8", (("1", "float32"),))}, **FAST)


def test_zoo_precisions_are_checked_against_the_target_when_the_recipe_loads():
    with pytest.raises(ConfigError, match="zoo.precisions"):
        recipe_from_dict({"target": {"backend": "torch"}, "zoo": {"precisions": ["int8"]}})
    with pytest.raises(ConfigError, match="unknown precision"):
        recipe_from_dict({"target": {"backend": "openvino"}, "zoo": {"precisions": ["int4"]}})
    assert recipe_from_dict({"target": {"backend": "openvino"}, "zoo": {"precisions": ["int8"]}}).zoo.precisions == ["int8"]


def test_the_fingerprint_records_the_isa_and_the_runtime_versions():
    fp = device_fingerprint(LatencyTarget(backend="openvino", dtype="int8"))
    assert isinstance(fp["isa"], list) and "openvino" in fp and "INT8" in fp["openvino_capabilities"]


# -- quantization --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend, quantizer", [("openvino", None), ("onnxruntime", None), ("openvino", "onnxruntime")])
def test_int8_is_close_to_float_and_quantizes_only_the_planned_slot(backend, quantizer, tmp_path):
    model, x = net(), images()
    onnx_path = export_onnx(model, torch.from_numpy(x[:8]), tmp_path / "m.onnx", dynamic_batch=True)
    target = LatencyTarget(backend=backend, quantizer=quantizer)
    batches = calibration_batches(x, 8)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    full = deploy_onnx(onnx_path, target, PrecisionPlan("int8"), calibration=batches, save_to=tmp_path / f"full{'.xml' if backend == 'openvino' else '.onnx'}")
    got = full.run(x)
    err = np.abs(got - expected).max() / np.abs(expected).max()
    assert 0 < err < 0.1  # quantized (not bit-equal to float), and close
    slot = deploy_onnx(onnx_path, target, PrecisionPlan.of("float32", {"2": "int8"}), calibration=batches,
                       save_to=tmp_path / f"slot{'.xml' if backend == 'openvino' else '.onnx'}")
    if backend == "onnxruntime":
        graph = onnx.load(str(slot.artifact)).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        fed = {n.name for n in graph.node if n.op_type == "Conv" and set(n.input) & dequantized}
        assert fed == {"/2/2.0/Conv"}
    else:
        import openvino as ov

        fq = [op for op in ov.Core().read_model(str(slot.artifact)).get_ops() if op.get_type_name() == "FakeQuantize"]
        fq_all = [op for op in ov.Core().read_model(str(full.artifact)).get_ops() if op.get_type_name() == "FakeQuantize"]
        assert 0 < len(fq) < len(fq_all)
    reloaded = load_artifact(full.artifact, target).run(x)
    assert np.allclose(reloaded, got, atol=1e-5)


def test_openvino_reads_onnx_as_its_converter_does_and_nncf_quantizes_the_same_nodes(tmp_path):
    import nncf
    import openvino as ov

    from hant.deploy.runtimes import read_onnx

    torch.manual_seed(0)
    model = nn.Sequential(  # SiLU and a squeeze-excite gate: graphs the converter's passes fuse
        nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(),
        timm_se(16), nn.Conv2d(16, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()
    x = images(8)
    path = export_onnx(model, torch.from_numpy(x[:1]), tmp_path / "m.onnx")
    core = ov.Core()
    fast, converted = read_onnx(ov, core, path), ov.convert_model(str(path))
    assert sorted(op.get_type_name() for op in fast.get_ops()) == sorted(op.get_type_name() for op in converted.get_ops())
    assert "Swish" in {op.get_type_name() for op in fast.get_ops()}  # the fusion ran (the bare read has Sigmoid·Mul)
    data = nncf.Dataset([x[i : i + 1] for i in range(8)])
    quantized = [nncf.quantize(m, data, subset_size=8) for m in (fast, converted)]
    fq = [sorted(op.get_friendly_name() for op in q.get_ops() if op.get_type_name() == "FakeQuantize") for q in quantized]
    assert fq[0] == fq[1] and fq[0]
    outs = [core.compile_model(q, "CPU")({0: x[:1]})[0] for q in quantized]
    assert np.array_equal(outs[0], outs[1])


def timm_se(channels: int) -> nn.Module:
    from timm.layers import SqueezeExcite

    return SqueezeExcite(channels, rd_ratio=0.25)


def test_int8_latency_is_measured_on_the_quantized_network(tmp_path):
    model, x = net(), images()
    target = LatencyTarget(backend="openvino", batch_size=4)
    stats = measure(
        [("f32", model, (3, 16, 16)), ("int8", model, (3, 16, 16))], target,
        plans={"int8": PrecisionPlan("int8")}, calibration={"int8": x}, **FAST,
    )
    assert stats["f32"].median_ms > 0 and stats["int8"].median_ms > 0


def test_a_deployed_module_scores_like_the_runtime_computes(tmp_path):
    model, x = net()[1], torch.from_numpy(images())
    stem = net()[0]
    with torch.no_grad():
        inputs = stem(x)
    q = deployed_module(model, (16, 16, 16), LatencyTarget(backend="onnxruntime"), PrecisionPlan("int8"), tmp_path, "blk",
                        inputs.numpy())
    with torch.no_grad():
        out, ref = q(inputs[:5]), model(inputs[:5])
    assert out.shape == ref.shape and 0 < (out - ref).abs().max() < 0.1 * ref.abs().max()


# -- calibration data ------------------------------------------------------------------------------


def test_digit_calibration_images_are_the_training_digits_in_every_channel():
    x = digits_images(12, 5, channels=3)
    assert x.shape == (5, 3, 12, 12) and x.dtype == np.float32
    train = digits_splits(12).train
    for i in range(5):
        for c in range(3):
            assert np.array_equal(x[i, c], train[i][0][0].numpy())
    with pytest.raises(ConfigError, match="at least one image"):
        digits_images(12, 0)


def test_slot_inputs_are_what_the_model_feeds_each_slot_batch_after_batch():
    model, x = net(), torch.from_numpy(images(8))
    slots = discover_slots(model, x[:2], patterns=["1", "2"])
    captured = slot_inputs(model, slots, x, batch_size=3)  # batches of 3, 3 and 2
    with torch.no_grad():
        first = model[0](x)
        expected = {"1": first, "2": model[1](first)}
    assert set(captured) == {"1", "2"}
    for path, want in expected.items():
        assert captured[path].dtype == np.float32 and np.allclose(captured[path], want.numpy(), atol=1e-6)


# -- whole networks and export ---------------------------------------------------------------------


def test_profiling_with_a_per_slot_precision_measures_every_option_in_both_and_mixes_the_calibration():
    model = net()
    slots = [
        SlotOptions("1", (16, 16, 16), (16, 16, 16), (("keep1", model[1]), ("id1", nn.Identity))),
        SlotOptions("2", (16, 16, 16), (32, 8, 8), (("keep2", model[2]), ("cheap2", lambda: nn.Conv2d(16, 32, 1, stride=2)))),
    ]
    with torch.no_grad():
        inside = model[0](torch.from_numpy(images())).numpy()
    table, _ = profile_network(
        model, (3, 16, 16), slots, LatencyTarget(backend="openvino", batch_size=4), None, base_uid="net",
        calibration_networks=4, precisions=["int8"], calibration=images(), slot_calibration={"1": inside, "2": inside},
        **FAST,
    )
    assert {"keep1", "keep1@int8", "id1@int8", "keep2@int8", "cheap2@int8"} <= set(table.entries)
    assert table.extra["precisions"] == ["float32", "int8"]
    assert table.predict_ms(["keep1@int8", "keep2"]) > 0
    assert set(table.extra["transitions_ms"]) == {"1@int8", "2@int8"}  # each slot's switch measured end to end


def test_export_writes_what_the_target_runs_and_the_file_reproduces_the_network(tmp_path):
    model, x = net(), images()
    ir = export_student(model, (3, 16, 16), tmp_path / "s", "auto", LatencyTarget(backend="openvino"),
                        PrecisionPlan.of("float32", {"2": "int8"}), x)
    assert ir.path.suffix == ".xml" and ir.path.with_suffix(".bin").is_file() and 0 < ir.max_abs_diff < 0.5
    qdq = export_student(model, (3, 16, 16), tmp_path / "s", "onnx", LatencyTarget(backend="onnxruntime", dtype="int8"),
                         PrecisionPlan("int8"), x)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(qdq.path)).graph.node)
    out = load_artifact(qdq.path, LatencyTarget(backend="onnxruntime")).run(x[:3])  # any batch size
    assert out.shape == (3, 4)
    with pytest.raises(DeployError, match="calibration"):
        export_student(model, (3, 16, 16), tmp_path / "t", "auto", LatencyTarget(backend="openvino", dtype="int8"))
