"""Tests of hant.latency: measurement, statistics, cache, table and profile (CPU; GPU tests skip)."""
from __future__ import annotations

import importlib
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import time

import pytest
import torch
from torch import nn

from hant.errors import ConfigError, LatencyError
from hant.latency import (
    LatencyCache,
    LatencyStat,
    LatencyTable,
    LatencyTarget,
    device_fingerprint,
    fingerprint_id,
    measure,
    profile,
)
from hant.latency.allocator import allocator_policy
from hant.latency.measure import measuring
from hant.latency.stats import median_ci_ranks, relative_ci_halfwidth
from hant.search import CandidateCost, Problem, SlotChoices, solve

measure_mod = importlib.import_module("hant.latency.measure")

FAST = dict(time_budget_s=1.5, min_reps=5, max_reps=40, warmup=2, min_sample_ms=1.0)
CPU = LatencyTarget()
STAT = LatencyStat(1.5, 1.4, 1.7, 12)


def small_conv() -> nn.Module:
    return nn.Conv2d(8, 8, 3, padding=1)


def big_conv() -> nn.Module:  # 64x the multiply-adds of small_conv on the same 32x32 map
    return nn.Conv2d(64, 64, 3, padding=1)


# -- statistics ----------------------------------------------------------------------------------


def test_median_ci_ranks_are_order_statistics():
    assert median_ci_ranks(5) is None  # 2 * 0.5**5 > 0.05: no 95% interval from 5 samples
    assert median_ci_ranks(6) == (0, 5)
    lo, hi = median_ci_ranks(100)
    assert (lo, hi) == (39, 60)  # the textbook 95% ranks 40 and 61 (1-based)
    assert relative_ci_halfwidth([1.0] * 10) == 0.0
    assert relative_ci_halfwidth([1.0, 2.0]) == float("inf")


def test_stat_round_trip_and_quartiles():
    s = LatencyStat.of_samples([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.q1_ms, s.median_ms, s.q3_ms, s.reps) == (2.0, 3.0, 4.0, 5)
    assert LatencyStat.from_dict(s.to_dict()) == s
    with pytest.raises(LatencyError):
        LatencyStat.from_dict({"median_ms": 1.0})


# -- measure -------------------------------------------------------------------------------------


def test_bigger_conv_is_measured_slower():
    stats = measure([("small", small_conv(), (8, 32, 32)), ("big", big_conv(), (64, 32, 32))], CPU, **FAST)
    assert stats["big"].median_ms > 2.0 * stats["small"].median_ms


def test_rounds_interleave_every_item_and_stats_are_sane(monkeypatch):
    calls: list[str] = []
    real_build = measure_mod.build_runner

    class Spy:
        def __init__(self, runner, name):
            self.runner, self.name = runner, name

        def time(self, n):
            calls.append(self.name)
            return self.runner.time(n)

    monkeypatch.setattr(measure_mod, "build_runner", lambda m, s, t, p, name, *rest: Spy(real_build(m, s, t, p, name, *rest), name))
    rounds: list[tuple[int, int]] = []
    items = [
        ("conv", small_conv(), (8, 16, 16)),
        ("relu", nn.ReLU(), (8, 16, 16)),
        ("mlp", nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)), (10, 32)),
    ]
    stats = measure(items, CPU, on_round=lambda c, n: rounds.append((c, n)), **FAST)

    assert list(stats) == ["conv", "relu", "mlp"]
    reps = {s.reps for s in stats.values()}
    assert len(reps) == 1  # every round times every item once
    n_rounds = reps.pop()
    assert FAST["min_reps"] <= n_rounds <= FAST["max_reps"] and len(rounds) == n_rounds
    for s in stats.values():
        assert 0.0 < s.q1_ms <= s.median_ms <= s.q3_ms
    timed = calls[len(calls) - 3 * n_rounds:]
    orders = [tuple(timed[i:i + 3]) for i in range(0, len(timed), 3)]
    assert all(sorted(o) == ["conv", "mlp", "relu"] for o in orders)
    assert len(set(orders)) > 1  # shuffled afresh each round


def test_measure_leaves_modules_and_threads_as_they_were():
    module = nn.Sequential(small_conv(), nn.BatchNorm2d(8)).train()
    module[1].eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        measure([("m", module, (8, 16, 16))], LatencyTarget(threads=1), **FAST)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert module.training and module[0].training and not module[1].training


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(allocator_policy() != "glibc-keep-freed", reason="the policy applies to glibc only")
def test_allocator_policy_holds_inside_the_measuring_block_only():
    with measuring(1):
        block = torch.ones(64 << 18)  # 64 MiB
        held = _resident_mib()
        del block
        assert _resident_mib() > held - 32  # freed memory is kept for the next allocation
    after = _resident_mib()
    assert after < held - 32  # handed back on leaving
    # and large blocks go back to the kernel again: one larger than the heap's freed 64 MiB, which
    # glibc would otherwise reuse (and keep, where a later allocation sits above it in the heap)
    block = torch.ones(256 << 18)
    del block
    assert _resident_mib() < after + 32


def test_min_time_keeps_rounds_going_after_convergence():
    kwargs = dict(FAST, rel_precision=0.5, max_reps=100_000)
    started = time.perf_counter()
    quick = measure([("relu", nn.ReLU(), (4,))], CPU, **kwargs)["relu"]
    quick_s = time.perf_counter() - started
    started = time.perf_counter()
    slow = measure([("relu", nn.ReLU(), (4,))], CPU, min_time_s=1.0, **kwargs)["relu"]
    assert time.perf_counter() - started >= 1.0 > quick_s
    assert slow.reps > quick.reps
    # converged, then stopped by the budget that min_time_s reaches: a result, not a failure
    assert measure([("relu", nn.ReLU(), (4,))], CPU, min_time_s=kwargs["time_budget_s"], **kwargs)["relu"].reps > 0
    with pytest.raises(LatencyError, match="min_time_s <= time_budget_s"):
        measure([("relu", nn.ReLU(), (4,))], CPU, min_time_s=2.0, **kwargs)


class SlowFirstCall(nn.Module):
    """Its first forward call takes ``first_s`` (as an int8 block's build and first inference do)."""

    def __init__(self, first_s: float):
        super().__init__()
        self.first_s = first_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first_s:
            time.sleep(self.first_s)
            self.first_s = 0.0
        return x.relu()


def test_the_time_budget_counts_the_timed_rounds_not_the_warm_up():
    kwargs = dict(FAST, rel_precision=1e-6, min_reps=2, max_reps=100_000, time_budget_s=0.6)
    started = time.perf_counter()
    stat = measure([("slow_start", SlowFirstCall(1.0), (4,))], CPU, **kwargs)["slow_start"]
    assert time.perf_counter() - started >= 1.0 + 0.5  # the warm-up, then rounds for (nearly) the whole budget
    assert stat.reps > 2 * kwargs["min_reps"]  # not the minimum the budget would leave had the warm-up spent it


def test_measure_rejects_duplicate_names():
    with pytest.raises(LatencyError, match="twice"):
        measure([("a", nn.ReLU(), (4,)), ("a", nn.ReLU(), (4,))], CPU, **FAST)


def test_module_that_fails_on_its_input_is_named():
    with pytest.raises(LatencyError, match="bad failed to run"):
        measure([("bad", small_conv(), (3, 16, 16))], CPU, **FAST)


def test_onnxruntime_backend_measures_a_conv_net():
    pytest.importorskip("onnxruntime")
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    target = LatencyTarget(backend="onnxruntime")
    stats = measure([("net", net, (3, 32, 32)), ("small", small_conv(), (8, 32, 32))], target, **FAST)
    for s in stats.values():
        assert 0.0 < s.q1_ms <= s.median_ms <= s.q3_ms and s.reps >= FAST["min_reps"]
    assert net.training  # eval() during export is undone
    fp = device_fingerprint(target)
    assert fp["onnxruntime_providers"] == ["CPUExecutionProvider"] and "onnxruntime" in fp


def test_unknown_backend_is_an_error():
    with pytest.raises(ConfigError):
        LatencyTarget(backend="tvm")
    target = LatencyTarget()
    object.__setattr__(target, "backend", "tvm")  # e.g. a target from a newer hant, past validation
    with pytest.raises(LatencyError, match="unknown latency backend"):
        measure([("r", nn.ReLU(), (4,))], target, **FAST)


def test_missing_onnxruntime_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(LatencyError, match="pip install onnxruntime"):
        measure([("r", nn.ReLU(), (4,))], LatencyTarget(backend="onnxruntime"), **FAST)
    with pytest.raises(LatencyError):
        device_fingerprint(LatencyTarget(backend="onnxruntime"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_an_error():
    with pytest.raises(LatencyError, match="no CUDA GPU"):
        measure([("r", nn.ReLU(), (4,))], LatencyTarget(device="cuda:0"), **FAST)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_bigger_conv_is_measured_slower(dtype):
    target = LatencyTarget(device="cuda:0", dtype=dtype, batch_size=8, memory_format="channels_last")
    small, big = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(256, 256, 3, padding=1)
    stats = measure([("small", small, (8, 56, 56)), ("big", big, (256, 56, 56))], target, **FAST)
    assert stats["big"].median_ms > stats["small"].median_ms
    assert next(big.parameters()).device.type == "cpu"  # measured on a copy
    fp = device_fingerprint(target)
    assert fp["gpu"] and fp["cuda"]


# -- cache ---------------------------------------------------------------------------------------


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("HANT_CACHE_DIR", str(tmp_path / "c"))
    cache = LatencyCache()
    assert cache.path == tmp_path / "c" / "latency.sqlite"
    assert cache.get("fp", CPU, "u1", (8, 4, 4)) is None
    cache.put("fp", CPU, "u1", (8, 4, 4), STAT)
    cache.put_many("fp", CPU, [("u2", (8, 4, 4), STAT), ("u3", [16], STAT)])
    again = LatencyCache(cache.path)  # another run
    assert again.get("fp", CPU, "u1", (8, 4, 4)) == STAT
    assert again.get("fp", CPU, "u1", (8, 4, 5)) is None
    assert again.get("other-fp", CPU, "u1", (8, 4, 4)) is None
    assert again.get("fp", LatencyTarget(batch_size=2), "u1", (8, 4, 4)) is None
    got = again.get_many("fp", CPU, [("u1", (8, 4, 4)), ("u3", (16,)), ("nope", (1,))])
    assert got == {("u1", (8, 4, 4)): STAT, ("u3", (16,)): STAT}
    assert len(again) == 3


def _write_rows(path: str, worker: int, n: int) -> None:
    cache = LatencyCache(path)
    target = LatencyTarget()
    for i in range(n):
        cache.put("fp", target, f"w{worker}-{i}", (3, 8, 8), LatencyStat(float(i), float(i), float(i), worker))
    cache.put_many("fp", target, [(f"w{worker}-batch-{i}", (3, 8, 8), LatencyStat(1.0, 1.0, 1.0, 1)) for i in range(n)])


def test_two_processes_write_the_cache_at_once(tmp_path):
    path = str(tmp_path / "latency.sqlite")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_write_rows, args=(path, w, 100)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = LatencyCache(path)
    assert len(cache) == 400
    keys = [(f"w{w}-{i}", (3, 8, 8)) for w in (0, 1) for i in range(100)]
    assert len(cache.get_many("fp", CPU, keys)) == 200


def test_corrupted_cache_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "latency.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = LatencyCache(path)
    with caplog.at_level(logging.WARNING, logger="hant.latency.cache"):
        assert cache.get("fp", CPU, "u", (1,)) is None
    assert "moved it to" in caplog.text
    assert list(tmp_path.glob("latency.sqlite.corrupt-*"))
    cache.put("fp", CPU, "u", (1,), STAT)
    assert LatencyCache(path).get("fp", CPU, "u", (1,)) == STAT


def test_truncated_cache_is_recovered(tmp_path, caplog):
    path = tmp_path / "latency.sqlite"
    cache = LatencyCache(path)
    cache.put_many("fp", CPU, [(f"uid-{i:05d}-" + "x" * 40, (3, 8, 8), STAT) for i in range(3000)])
    data = path.read_bytes()
    assert len(data) > 64 * 1024
    path.write_bytes(data[: len(data) // 2])
    fresh = LatencyCache(path)
    with caplog.at_level(logging.WARNING, logger="hant.latency.cache"):
        fresh.put("fp", CPU, "new", (1,), STAT)
    assert "moved it to" in caplog.text
    assert fresh.get("fp", CPU, "new", (1,)) == STAT


def test_unwritable_cache_does_not_stop_the_run(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = LatencyCache(blocker / "sub" / "latency.sqlite")  # parent is a file: cannot be created
    with caplog.at_level(logging.WARNING, logger="hant.latency.cache"):
        cache.put("fp", CPU, "u", (1,), STAT)
        assert cache.get("fp", CPU, "u", (1,)) is None
    assert "continuing without it" in caplog.text


# -- table and profile ---------------------------------------------------------------------------


def test_table_round_trip_and_compatibility(tmp_path):
    fp = device_fingerprint(CPU)
    table = LatencyTable(CPU, fp, {"a": STAT}, {"full_ms": 3.0})
    table.to_json(tmp_path / "latency.json")
    back = LatencyTable.from_json(tmp_path / "latency.json")
    assert back == table and back.latency_ms("a") == 1.5
    back.check_compatible(CPU, dict(reversed(list(fp.items()))))  # key order does not matter

    other = dict(fp, cpu="AMD EPYC 9654 96-Core Processor")
    with pytest.raises(LatencyError, match=r"not on this machine .*re-run `hant profile`"):
        back.check_compatible(CPU, other)
    with pytest.raises(LatencyError, match="os='Plan9'"):  # same one-line description: say what differs
        back.check_compatible(CPU, dict(fp, os="Plan9"))
    with pytest.raises(LatencyError, match="measured for target"):
        back.check_compatible(LatencyTarget(batch_size=4), fp)
    with pytest.raises(LatencyError):
        back.latency_ms("missing")


def test_table_prediction_is_the_sum_the_search_checks():
    """Seven times 0.1 sums to 0.7 left to right but to 0.7000000000000001 correctly rounded. The table
    predicts with the same correctly rounded sum the search checks, so a budget of exactly the
    teacher's prediction admits the teacher."""
    stat = lambda ms: LatencyStat(ms, ms, ms, 5)  # noqa: E731
    names = [f"k{i}" for i in range(6)]
    table = LatencyTable(CPU, device_fingerprint(CPU), {**{n: stat(0.1) for n in names}, "fast": stat(0.05)},
                         {"fixed_ms": 0.1})
    predicted = table.predict_ms(names)
    assert predicted == math.fsum([0.1] * 7) > 0.1 + sum([0.1] * 6)
    problem = Problem(
        tuple(
            SlotChoices(n, (CandidateCost("keep", table.latency_ms(n), 0.0), CandidateCost("fast", table.latency_ms("fast"), 1.0)))
            for n in names
        ),
        budget_ms=predicted,
        fixed_latency_ms=table.extra["fixed_ms"],
    )
    selection = solve(problem)
    assert set(selection.choices.values()) == {"keep"} and selection.total_score == 0.0


def test_table_rejects_foreign_files(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(LatencyError, match="not a hant latency table"):
        LatencyTable.from_json(tmp_path / "x.json")
    with pytest.raises(LatencyError, match="hant profile"):
        LatencyTable.from_json(tmp_path / "missing.json")


def test_fingerprint_is_stable():
    fp = device_fingerprint(CPU)
    assert fp["logical_cores"] >= 1 and fp["threads"] == 1 and fp["torch"] == torch.__version__
    assert fingerprint_id(fp) == fingerprint_id(device_fingerprint(CPU))
    assert fingerprint_id(fp) != fingerprint_id(device_fingerprint(LatencyTarget(threads=2)))


def test_profile_measures_only_cache_misses(tmp_path):
    cache = LatencyCache(tmp_path / "latency.sqlite")
    entries = [("small", small_conv, (8, 16, 16)), ("relu", nn.ReLU(), (8, 16, 16))]
    progress: list[tuple[int, int]] = []
    stats, hits = profile(entries, CPU, cache, on_progress=lambda d, t: progress.append((d, t)), **FAST)
    assert hits == 0 and list(stats) == ["small", "relu"]
    assert progress[0] == (0, 2) and progress[-1] == (2, 2)
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:]))

    def must_not_build() -> nn.Module:
        raise AssertionError("a cached candidate was built")

    more = [("small", must_not_build, (8, 16, 16)), ("relu", nn.ReLU(), (8, 16, 16)), ("gelu", nn.GELU(), (8, 16, 16))]
    stats2, hits2 = profile(more, CPU, cache, **FAST)
    assert hits2 == 2 and stats2["small"] == stats["small"] and set(stats2) == {"small", "relu", "gelu"}
    with pytest.raises(LatencyError, match="input shapes"):
        profile([("a", nn.ReLU(), (1,)), ("a", nn.ReLU(), (2,))], CPU, None, **FAST)
