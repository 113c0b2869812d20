"""``hant profile MODEL``: a timm model's calibrated latency table, with the cache said aloud."""
from __future__ import annotations

import pytest

from hant.cli.main import main
from hant.latency import LatencyTable, LatencyTarget, device_fingerprint

ARGS = ["profile", "resnet10t", "--input-size", "32", "--families", "identity", "--time-budget", "1",
        "--calibration-networks", "3"]


def test_profile_a_timm_model_then_hit_the_cache(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main([*ARGS, "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "0 from the cache" in first and "leave-one-out error" in first and str(out) in first
    table = LatencyTable.from_json(out)
    table.check_compatible(LatencyTarget(), device_fingerprint(LatencyTarget()))
    assert {"teacher_ms", "fixed_ms", "block_scale", "calibration"} <= set(table.extra)

    assert main([*ARGS, "--out", str(out)]) == 0
    assert "all from the cache" in capsys.readouterr().out
    assert LatencyTable.from_json(out).entries == table.entries


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--backend", "tvm"], "unknown latency backend 'tvm'; choose one of torch, torch_compile"),
        (["--backend", "onnxruntime-cuda"], "runs on a GPU"),
        (["--batch-size", "0"], "at least 1"),
    ],
)
def test_bad_target_is_one_clear_line(capsys, extra, message):
    assert main([*ARGS, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_flags_on_a_run_directory_are_refused(tmp_path, capsys):
    assert main(["profile", str(tmp_path), "--batch-size", "8"]) == 2
    assert "--batch-size apply to a timm model name" in capsys.readouterr().err
