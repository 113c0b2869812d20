"""Whole-network latency: the outside-slot part, the calibration, the new backends and their errors."""
from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from hant.errors import ConfigError, LatencyError
from hant.latency import (
    LatencyCache,
    LatencyTable,
    LatencyTarget,
    SlotOptions,
    device_fingerprint,
    fit_calibration,
    measure,
    profile_network,
)
from hant.deploy.onnx import export_onnx
from hant.latency.network import SlotStub, assemble, calibration_choices, fast_choices, outside_slots

runtime = importlib.import_module("hant.latency.runtime")

FAST = dict(time_budget_s=2.0, min_reps=5, max_reps=30, warmup=1, min_sample_ms=0.5)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # stem, outside the slots
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),  # head, outside the slots
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()


def slots_of(model: nn.Sequential) -> list[SlotOptions]:
    return [
        SlotOptions("1", (8, 16, 16), (8, 16, 16), (("keep1", model[1]), ("id1", nn.Identity), ("wide1", lambda: nn.Conv2d(8, 8, 5, padding=2)))),
        SlotOptions("2", (8, 16, 16), (16, 8, 8), (("keep2", model[2]), ("cheap2", lambda: nn.Conv2d(8, 16, 1, stride=2)))),
    ]


# -- calibration ---------------------------------------------------------------------------------


def test_calibration_recovers_a_line_and_reports_leave_one_out_error():
    pred = [10.0, 20.0, 30.0, 40.0, 55.0]
    cal = fit_calibration(pred, [1.2 * p + 0.5 for p in pred])
    assert cal.scale == pytest.approx(1.2) and cal.offset_ms == pytest.approx(0.5)
    assert cal.loo_max_abs_err_pct == pytest.approx(0.0, abs=1e-9)
    assert cal.raw_errors_pct[0] == pytest.approx(100 * (10 - 12.5) / 12.5)
    noisy = fit_calibration(pred, [12.0, 25.0, 35.0, 48.0, 66.0 * 1.1])
    assert noisy.loo_max_abs_err_pct > 1.0  # the outlier shows in the leave-one-out error
    assert type(noisy).from_dict(noisy.to_dict()) == noisy


def test_the_correction_is_kept_only_where_it_predicts_held_out_networks_better():
    pred = [10.0, 20.0, 30.0, 40.0]
    assert fit_calibration(pred, pred).model == "none"  # exact addition: no correction (ties go to the simpler)
    ratio = fit_calibration(pred, [1.1 * p for p in pred])
    assert ratio.model in ("ratio", "line") and ratio.apply(50.0) == pytest.approx(55.0)
    scattered = fit_calibration(pred, [10.5, 19.0, 31.5, 39.0])  # unbiased noise: fitting it would not help
    assert scattered.model == "none" and scattered.scale == 1.0


def test_a_line_is_not_extrapolated_from_a_narrow_band_of_networks():
    pred = [25.5, 26.6, 31.0, 34.2, 37.0, 25.9]  # random students: 0.7-1.0x the teacher
    measured = [27.9, 28.4, 32.7, 31.7, 38.4, 29.8]  # a line through these has a large offset
    cal = fit_calibration(pred, measured)
    assert cal.model in ("none", "ratio") and cal.offset_ms == 0.0
    assert cal.apply(10.0) < 12.0, "a student at a third of the teacher stays near a third"


def test_few_points_fit_a_ratio_only():
    cal = fit_calibration([10.0, 20.0], [11.0, 22.0])
    assert cal.model == "ratio" and cal.offset_ms == 0.0 and cal.scale == pytest.approx(1.1) and cal.apply(30.0) == pytest.approx(33.0)
    with pytest.raises(LatencyError, match="at least 2"):
        fit_calibration([10.0], [11.0])
    with pytest.raises(LatencyError, match="positive"):
        fit_calibration([10.0, -1.0], [11.0, 2.0])


# -- the network ---------------------------------------------------------------------------------


def test_outside_slots_keeps_shapes_and_the_layers_that_feed_a_slot(tmp_path):
    model = net()
    slots = slots_of(model)
    x = torch.randn(2, 3, 16, 16)
    eager = outside_slots(model, slots, LatencyTarget(batch_size=2))
    assert isinstance(eager[1], SlotStub) and isinstance(eager[2], SlotStub)
    assert eager(x).shape == model(x).shape == (2, 4)
    tied = outside_slots(model, slots, LatencyTarget(backend="onnxruntime", batch_size=2))
    onnx = pytest.importorskip("onnx")
    path = export_onnx(tied.eval(), x, tmp_path / "outside.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Conv" in ops and "Gemm" in ops  # neither the stem nor the head was folded away


def test_assemble_and_calibration_choices():
    model = net()
    slots = slots_of(model)
    student = assemble(model, slots, (1, 1))
    assert isinstance(student[1], nn.Identity) and student[2].kernel_size == (1, 1)
    assert isinstance(model[1], nn.Sequential)  # the model itself is untouched
    choices = calibration_choices(slots, 6, seed=3)
    assert choices == calibration_choices(slots, 6, seed=3) and len(choices) == 6
    assert all(0 <= k < len(s.options) for c in choices for s, k in zip(slots, c))


def test_fast_choices_take_options_below_a_falling_share_of_each_block():
    slots = slots_of(net())
    timed = {"keep1": 10.0, "id1": 0.1, "wide1": 30.0, "keep2": 5.0, "cheap2": 3.0}
    choices = fast_choices(slots, timed, 3, seed=1)
    assert choices == fast_choices(slots, timed, 3, seed=1) and len(choices) == 3
    assert all(c[0] == 1 for c in choices)  # only the identity is under 0.8 x keep1
    assert choices[0][1] == 1 and choices[-1][1] == 1  # cheap2 (0.6 x) fits 0.8; the fastest where none fits 0.2
    untimed = fast_choices(slots, {"keep1": 10.0, "keep2": 5.0, "cheap2": 1.0}, 1)
    assert untimed == [(0, 1)]  # options never timed are not drawn: keep1 is the fastest timed one


def test_fast_calibration_networks_extend_the_calibration_below_the_random_ones():
    model = net()
    slots = slots_of(model)
    table, _ = profile_network(model, (3, 16, 16), slots, LatencyTarget(batch_size=2), None, base_uid="network:tiny",
                               calibration_networks=2, fast_calibration_networks=2, **FAST)
    cal = table.extra["calibration"]
    assert len(cal["measured_ms"]) == 1 + 2 + 2
    assert max(cal["predicted_ms"][3:]) < cal["predicted_ms"][0]  # the fast ones predict under the teacher


def test_profile_network_predicts_the_network_and_hits_the_cache(tmp_path):
    model = net()
    slots = slots_of(model)
    target = LatencyTarget(batch_size=2)
    cache = LatencyCache(tmp_path / "c.sqlite")
    table, hits = profile_network(model, (3, 16, 16), slots, target, cache, base_uid="network:tiny",
                                  calibration_networks=4, **FAST)
    assert hits == 0
    x = table.extra
    assert {"keep1", "id1", "wide1", "keep2", "cheap2", "network:tiny", "network:tiny:outside-slots"} <= set(table.entries)
    assert 0 < x["outside_raw_ms"] < x["teacher_ms"] and x["fixed_ms"] >= 0
    cal = x["calibration"]
    assert len(cal["measured_ms"]) == 5 and cal["measured_ms"][0] == x["teacher_ms"]
    assert table.latency_ms("keep1") == pytest.approx(x["block_scale"] * table.measured_ms("keep1"))
    assert table.predict_ms(["keep1", "keep2"]) == pytest.approx(
        cal["scale"] * cal["predicted_ms"][0] + cal["offset_ms"], rel=1e-6, abs=1e-6
    ) or x["fixed_ms"] == 0.0
    assert x["teacher_predicted_ms"] == table.predict_ms(["keep1", "keep2"])  # exactly: budget 1.0 admits it
    again, hits2 = profile_network(model, (3, 16, 16), slots, target, cache, base_uid="network:tiny",
                                   calibration_networks=4, **FAST)
    assert hits2 == len(again.entries) and again.entries == table.entries
    only, _ = profile_network(model, (3, 16, 16), slots, target, None, base_uid="network:tiny",
                              calibration_networks=1, only={"keep1"}, seed=5, **FAST)
    assert "keep1" in only.entries and len(only.entries) < len(table.entries) + 1


def test_table_of_another_timer_or_allocator_is_refused(tmp_path):
    fp = device_fingerprint(LatencyTarget())
    assert fp["timer"] == "thread_cpu_time" and "allocator" in fp
    assert device_fingerprint(LatencyTarget(threads=2))["timer"] == "wall_clock"
    LatencyTable(LatencyTarget(), dict(fp, timer="wall_clock")).to_json(tmp_path / "t.json")
    with pytest.raises(LatencyError, match="timer='wall_clock'"):
        LatencyTable.from_json(tmp_path / "t.json").check_compatible(LatencyTarget(), fp)


# -- backends ------------------------------------------------------------------------------------


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ConfigError, match="torch, torch_compile, onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt"):
        LatencyTarget(backend="tensorflow")
    with pytest.raises(ConfigError, match="runs on a GPU"):
        LatencyTarget(backend="onnxruntime-tensorrt")


@pytest.mark.parametrize("backend,provider", [("onnxruntime-cuda", "CUDAExecutionProvider"),
                                              ("onnxruntime-tensorrt", "TensorrtExecutionProvider")])
def test_missing_onnxruntime_provider_is_named(monkeypatch, backend, provider):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(LatencyError, match=f"{provider}.*install onnxruntime-gpu"):
        runtime.ort_providers(LatencyTarget(device="cuda:0", backend=backend))
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    names = runtime.provider_names(runtime.ort_providers(LatencyTarget(device="cuda:0", backend="onnxruntime-cuda")))
    assert names == ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_backend_without_gpu_is_an_error():
    with pytest.raises(LatencyError, match="no CUDA GPU"):
        measure([("r", nn.ReLU(), (4,))], LatencyTarget(device="cuda:0", backend="onnxruntime-tensorrt"), **FAST)


def test_torch_compile_without_a_compiler_is_an_error(monkeypatch):
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.raises(LatencyError, match="no C compiler"):
        measure([("r", nn.ReLU(), (4,))], LatencyTarget(backend="torch_compile"), **FAST)


def test_torch_compile_measures_a_module():
    stats = measure([("conv", nn.Conv2d(8, 8, 3, padding=1), (8, 16, 16))], LatencyTarget(backend="torch_compile"), **FAST)
    assert stats["conv"].median_ms > 0
    assert device_fingerprint(LatencyTarget(backend="torch_compile"))["timer"] == "thread_cpu_time"


def test_a_slot_switched_to_another_precision_is_charged_its_measured_transition():
    from hant.latency.network import raw_prediction_ms, transition_costs, transition_precisions
    from hant.latency.stats import LatencyStat

    def stat(ms: float) -> LatencyStat:
        return LatencyStat(ms, ms, ms, 8)

    slots = [SlotOptions("a", (4, 8, 8), (4, 8, 8), (("ka", nn.Identity()), ("xa", nn.Identity()))),
             SlotOptions("b", (4, 8, 8), (4, 8, 8), (("kb", nn.Identity()),))]
    target = LatencyTarget(backend="openvino", dtype="int8")
    table = LatencyTable(target, {}, {"ka": stat(1.0), "ka@float32": stat(2.5), "xa@float32": stat(0.5),
                                      "kb": stat(1.0), "kb@float32": stat(2.0)}, {"block_scale": 0.5})
    switched = transition_precisions(slots, ["int8", "float32"], "int8")
    assert switched == [("float32", "int8"), ("int8", "float32")]
    # teacher 6 ms; slot a in float32 measured 8.0 (its block alone +1.5), slot b 7.0 (+1.0)
    table.extra["transitions_ms"] = transition_costs(table, slots, switched, [8.0, 7.0], 6.0)
    assert table.extra["transitions_ms"] == pytest.approx({"a@float32": 0.5, "b@float32": 0.0})
    assert table.transition_ms("a", "float32") == pytest.approx(0.25)  # scaled like a block
    assert table.transition_ms("a", "int8") == 0.0 and table.transition_ms("c", "float32") == 0.0
    assert table.slot_option_ms("a", "xa@float32", "float32") == pytest.approx(0.5 * 0.5 + 0.25)
    table.extra["transitions_ms"]["a@float32"] = -2.0  # noise can make a measured difference negative
    assert table.slot_option_ms("a", "xa@float32", "float32") == 0.0
    table.extra["transitions_ms"]["a@float32"] = 0.5
    # any option of slot a in float32 pays the slot's transition, not only the teacher block
    assert raw_prediction_ms(table, slots, (1, 0), 3.0, ("float32", "int8")) == pytest.approx(3.0 + 0.5 + 0.5 + 1.0)
    assert raw_prediction_ms(table, slots, (0, 0), 3.0) == pytest.approx(5.0)  # all in int8: no transition
