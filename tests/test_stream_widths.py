"""Stream widths in HANT's search: ``stream_cut`` candidates, the reordered teacher, the linked program,
the student cut to the chosen widths, saved and loaded."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
from tiny import tiny_recipe
from torch.utils.data import DataLoader, TensorDataset

from hant.config import recipe_from_dict
from hant.distill.chunk import Job
from hant.distill.scoring import score_jobs
from hant.errors import SearchError
from hant.io import hash_obj, read_json
from hant.ops_zoo import build_candidate
from hant.ops_zoo.families.stream_cut import STREAM_FAMILY, StreamCut
from hant.ops_zoo.pruning import pruned_width
from hant.ops_zoo.zoo import build_zoo
from hant.pipeline import Context, RunDir, run_stages
from hant.pipeline.stages import build_student, chosen_specs, latency_table, selection_problem, selected_streams
from hant.pipeline.streams import OUTSIDE_SLOT, STREAM_PREFIX, admissible_zoo, offered_widths, stream_problem
from hant.pruning.importance import weight_importance
from hant.pruning.streams import StreamLayout
from hant.search import Problem, solve
from hant.slots import discover_slots, get_submodule
from hant.student import load_student, save_student

STREAM_ZOO = {"identity": {}, "pruned": {"widths": [0.5]}, "stream_cut": {"fractions": [0.5], "widths": [1.0, 0.5]}}


@pytest.fixture(scope="module", params=[("resnet18", {"replace_stem_pool": True}), ("mobilenetv2_100", {}),
                                        ("tf_efficientnet_lite0", {})], ids=lambda p: p[0])
def resnet(request):
    torch.manual_seed(0)
    name, kwargs = request.param
    model = timm.create_model(name, num_classes=10, in_chans=1, **kwargs).eval()
    slots = discover_slots(model, torch.randn(2, 1, 32, 32))
    layout = StreamLayout.trace(model, (1, 32, 32), [s.path for s in slots])
    return layout.reordered(model), slots, layout


def test_candidates_read_the_kept_channels_and_zero_the_dropped_ones(resnet) -> None:
    model, slots, layout = resnet
    zoo = admissible_zoo(build_zoo(model, slots, {STREAM_FAMILY: {}}), slots, layout)
    for slot in slots:
        specs = [s for s in zoo[slot.name] if s.family == STREAM_FAMILY]
        assert specs and all(s.params["inp"] < slot.in_shape[0] or s.params["out"] < slot.out_shape[0] for s in specs)
        for spec in specs[:: max(1, len(specs) // 3)]:
            module = build_candidate(spec, get_submodule(model, slot.path))
            x = torch.randn(2, *slot.in_shape)
            with torch.no_grad():
                y, inner = module(x), module.inner(x[:, : spec.params["inp"]])
            assert isinstance(module, StreamCut) and y.shape[1:] == tuple(slot.out_shape)
            torch.testing.assert_close(y[:, : spec.params["out"]], inner)
            assert not y[:, spec.params["out"]:].any()
    assert not any(m.training for m in model.modules()), "building candidates put the teacher in training mode"


def test_a_stream_candidate_is_scored_on_the_channels_it_keeps(resnet) -> None:
    model, slots, layout = resnet
    slot = next(s for s in slots if layout.slot_streams(s.path)[1] is not None)
    zoo = admissible_zoo(build_zoo(model, slots, {STREAM_FAMILY: {}}), slots, layout)
    spec = next(s for s in zoo[slot.name] if s.family == STREAM_FAMILY and s.params["out"] < slot.out_shape[0])
    module = build_candidate(spec, get_submodule(model, slot.path)).eval()
    images = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    loader = DataLoader(TensorDataset(images, torch.zeros(8, dtype=torch.long)), batch_size=4)
    seen = {}
    handle = get_submodule(model, slot.path).register_forward_hook(lambda _m, a, out: seen.update(io=(a[0].clone(), out.clone())))
    with torch.no_grad():
        model(images)
    handle.remove()
    x_in, target = seen["io"]
    with torch.no_grad():
        out = module(x_in)
    kept = spec.params["out"]
    expected = (out[:, :kept] - target[:, :kept]).pow(2).sum() / target.pow(2).sum()
    got = score_jobs(model, [Job(slot, spec, module)], loader, "nmse", None, torch.device("cpu"))[slot.name, spec.uid]
    assert got.feature_loss == pytest.approx(expected.item(), rel=1e-4)


def test_a_block_cut_alone_is_the_block_of_the_network_cut_to_the_same_widths(resnet) -> None:
    model, slots, layout = resnet
    zoo = build_zoo(model, slots, {STREAM_FAMILY: {"fractions": [0.5], "widths": [1.0]}})
    counts = {g: pruned_width(layout.width(g), 0.5, 8) for g in layout.streams()}
    network = layout.cut(model, counts)
    for slot in slots:
        g_in, g_out = layout.slot_streams(slot.path)
        n_in = counts.get(g_in, slot.in_shape[0])
        n_out = counts.get(g_out, slot.out_shape[0])
        spec = next((s for s in zoo[slot.name] if s.family == STREAM_FAMILY
                     and s.params["inp"] == n_in and s.params["out"] == n_out), None)
        if spec is None:  # neither side of this slot is a prunable stream, or half is the full width
            assert (n_in, n_out) == (slot.in_shape[0], slot.out_shape[0])
            continue
        alone = build_candidate(spec, get_submodule(model, slot.path)).inner
        x = torch.randn(2, n_in, *slot.in_shape[1:])
        with torch.no_grad():
            torch.testing.assert_close(alone(x), get_submodule(network, slot.path)(x))


def test_the_reordered_teacher_puts_each_streams_strongest_channels_first(resnet) -> None:
    model, _, layout = resnet
    for g, scores in weight_importance(model, layout.graph.streams(), "l1").items():
        assert torch.all(scores[:-1] >= scores[1:]), g


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("streams")
    recipe = tiny_recipe(zoo={"families": STREAM_ZOO}, search={"budget": 0.97, "verify_rounds": 2})
    ctx = Context(recipe_from_dict(recipe), RunDir(root))
    run_stages(ctx, "report")
    return ctx


def _agrees(ctx: Context, choices: dict[str, str]) -> bool:
    """Every slot's chosen candidate assumes the widths the program chose for the streams it touches."""
    layout, specs = ctx.stream_layout, chosen_specs(ctx, choices)
    for slot in ctx.slots:
        spec = specs[slot.name]
        widths = (spec.params["inp"], spec.params["out"]) if spec.family == STREAM_FAMILY else (slot.in_shape[0], slot.out_shape[0])
        for g, n in zip(layout.slot_streams(slot.path), widths):
            if g is not None and int(choices[STREAM_PREFIX + g]) != n:
                return False
    outside = dict(p.split("=") for p in choices[OUTSIDE_SLOT].split(",")) if choices[OUTSIDE_SLOT] != "teacher" else {}
    return all(int(choices[STREAM_PREFIX + g]) == int(n) for g, n in outside.items())


def test_every_stream_candidate_is_timed_as_deployed_and_the_outside_part_per_width(stream_run) -> None:
    table = latency_table(stream_run)
    stream_specs = [s for specs in stream_run.zoo.values() for s in specs if s.family == STREAM_FAMILY]
    assert stream_specs and all(table.measured_ms(s.uid) > 0 for s in stream_specs)
    outside = table.extra["stream_outside_ms"]
    layout = stream_run.stream_layout
    assert len(outside) == math.prod(1 + 1 for _ in layout.outside_streams())  # full and half of each
    full = ",".join(f"{g}={layout.width(g)}" for g in sorted(layout.outside_streams()))
    assert outside[full] == pytest.approx(table.extra["fixed_ms"])


def test_the_program_narrows_streams_where_only_that_meets_the_budget(stream_run) -> None:
    ctx = stream_run
    table = latency_table(ctx)
    problem = selection_problem(ctx, table, 1e9)
    network = {s.name for s in ctx.slots}
    full_floor = table.extra["fixed_ms"] + sum(
        min(c.latency_ms for c in slot.candidates if not c.key.startswith(STREAM_FAMILY))
        for slot in problem.slots if slot.name in network
    )
    lo, hi = 0.0, full_floor
    for _ in range(20):  # the smallest budget the linked program meets
        mid = (lo + hi) / 2
        try:
            solve(selection_problem(ctx, table, mid))
            hi = mid
        except SearchError:
            lo = mid
    assert hi < full_floor, "cutting streams gives no selection faster than the fastest full-width one"
    selection = solve(selection_problem(ctx, table, (hi + full_floor) / 2))
    assert _agrees(ctx, selection.choices)
    assert any(int(selection.choices[STREAM_PREFIX + g]) < ctx.stream_layout.width(g) for g in ctx.stream_layout.streams())


def test_every_offered_stream_width_is_scored_once_and_the_program_charges_it(stream_run) -> None:
    ctx = stream_run
    scores, layout = read_json(ctx.run.scores), ctx.stream_layout
    stream_slots = {s.name: s for s in selection_problem(ctx, latency_table(ctx), 1e9).slots if s.name.startswith(STREAM_PREFIX)}
    narrowed = 0
    for g, widths in offered_widths(ctx.zoo, ctx.slots, layout).items():
        records, full = scores.get(STREAM_PREFIX + g, {}), str(layout.width(g))
        costs = {c.key: c.score for c in stream_slots[STREAM_PREFIX + g].candidates}
        assert costs[full] == 0.0
        for n in widths - {layout.width(g)}:
            assert records[str(n)]["status"] == "ok"
            assert costs[str(n)] == pytest.approx(max(records[str(n)]["score"] - records[full]["score"], 0.0))
            narrowed += 1
    assert narrowed > 0


def test_no_candidate_or_stream_width_is_credited_with_beating_the_teacher(stream_run) -> None:
    """A score that ranks every change above the teacher (as ``swap_error``'s noise does for some) is
    floored at the teacher's block and the full stream width; with ``teacher_floor`` off it is not."""
    def flipped(rec):
        return -1.0 - rec["score"] if rec["status"] == "ok" else rec["score"]

    table = latency_table(stream_run)
    unfloored = Context(replace(stream_run.recipe, search=replace(stream_run.recipe.search, teacher_floor=False)), stream_run.run)
    for ctx, floored in ((stream_run, True), (unfloored, False)):
        problem = selection_problem(ctx, table, 1e9, flipped)
        below = [c for slot in problem.slots for c in slot.candidates if c.key != "keep" and c.score < 0]
        kept = [c for slot in problem.slots for c in slot.candidates if c.key == "keep"]
        assert kept and all(c.score == 0.0 for c in kept)
        assert not below if floored else below
        if floored:
            changed = [c for slot in problem.slots if not slot.name.startswith((STREAM_PREFIX, OUTSIDE_SLOT))
                       for c in slot.candidates if c.key != "keep"]
            assert changed and all(c.score == 0.0 for c in changed)


def test_the_student_is_cut_to_the_chosen_widths_and_saved_so(stream_run, tmp_path) -> None:
    ctx = stream_run
    choices = read_json(ctx.run.selection)["choices"]
    assert _agrees(ctx, choices)
    student = build_student(ctx, choices).eval()
    streams = selected_streams(ctx, choices)
    save_student(student, tmp_path, ctx.model_desc, ctx.slots, chosen_specs(ctx, choices),
                 streams=streams, input_shape=ctx.input_shape)
    loaded = load_student(tmp_path)
    x = torch.randn(3, *ctx.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x))
    saved = read_json(ctx.run.student_dir / "arch.json")["streams"]["counts"]
    assert saved == streams
    report = read_json(ctx.run.report_json)
    assert 0 <= report["student"]["changed_slots"] <= len(ctx.slots)


def test_offering_stream_widths_invalidates_the_stored_teacher(tmp_path) -> None:
    from hant.pipeline.runner import STAGES

    def config(families: dict) -> object:
        return hash_obj(STAGES["teacher"].config(Context(recipe_from_dict(tiny_recipe(zoo={"families": families})), RunDir(tmp_path))))

    plain = {"identity": {}, "pruned": {"widths": [0.5]}}
    assert config(plain) == config({**plain, "conv_bn_act": {}})  # other zoo changes keep the teacher
    assert config(plain) != config(STREAM_ZOO)  # the stream-reordered teacher is another file


def test_export_writes_the_cut_student(stream_run) -> None:
    out = subprocess.run([sys.executable, "-m", "hant.cli", "export", str(stream_run.run.root)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["format"] == "torchscript" and summary["max_abs_diff_vs_torch_float32"] < 1e-4


def test_a_table_without_stream_entries_is_one_clear_error(stream_run) -> None:
    table = latency_table(stream_run)
    del table.extra["stream_outside_ms"]
    with pytest.raises(SearchError, match="no stream-width entries; re-run `hant profile`"):
        stream_problem(Problem((), 1.0), {}, stream_run.slots, stream_run.stream_layout, table, {})


def test_candidates_narrowing_a_stream_that_cannot_be_cut_are_not_offered() -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1, replace_stem_pool=True).eval()
    slots = discover_slots(model, torch.randn(2, 1, 32, 32))
    layout = StreamLayout.trace(model, (1, 32, 32), [s.path for s in slots])
    zoo = build_zoo(model, slots, {STREAM_FAMILY: {}})
    frozen, _ = layout.slot_streams("layer2.0")  # the first stage's stream, read by layer2.0
    layout.graph.groups[frozen].freeze("a layer hant cannot cut")
    kept = admissible_zoo(zoo, slots, layout)
    readers = [s for s in slots if layout.graph.slot_inputs[s.path] == [frozen]]
    writers = [s for s in slots if layout.graph.slot_outputs[s.path] == [frozen]]
    assert readers and writers
    for slot in readers:
        assert all(s.params["inp"] == slot.in_shape[0] for s in kept[slot.name] if s.family == STREAM_FAMILY)
    for slot in writers:
        assert all(s.params["out"] == slot.out_shape[0] for s in kept[slot.name] if s.family == STREAM_FAMILY)
    assert sum(map(len, kept.values())) < sum(map(len, zoo.values()))


def test_score_sums_of_a_stream_selection_count_the_stream_widths(stream_run) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import score_predictiveness as sp

    choices = read_json(stream_run.run.selection)["choices"]
    layout = stream_run.stream_layout
    full = {**choices, **{STREAM_PREFIX + g: str(layout.width(g)) for g in layout.streams()}}
    g = next(g for g, ws in offered_widths(stream_run.zoo, stream_run.slots, layout).items() if len(ws) > 1)
    narrow = {**full, STREAM_PREFIX + g: str(min(offered_widths(stream_run.zoo, stream_run.slots, layout)[g]))}
    records = read_json(stream_run.run.scores)[STREAM_PREFIX + g]
    for name in ("swap_kl", "swap_error"):
        delta = sp.score_sums(stream_run, narrow)[name] - sp.score_sums(stream_run, full)[name]
        assert delta == pytest.approx(sp.SCORES[name](records[narrow[STREAM_PREFIX + g]])
                                      - sp.SCORES[name](records[str(layout.width(g))]))


def test_score_predictiveness_draws_only_the_named_scores_picks(stream_run) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import score_predictiveness as sp

    drawn = sp.draw_students(stream_run, [0.97, 0.99], 2, 0.5, 0, ["swap_error"])
    assert all(d["drawn_by"].startswith("swap_error") for d in drawn)
    for budget in (0.97, 0.99):  # the score's own pick first, then perturbed ones (a budget may offer only one)
        mine = [d["drawn_by"] for d in drawn if d["budget"] == budget]
        assert mine[0] == "swap_error" and set(mine[1:]) <= {"swap_error, perturbed"} and len(mine) <= 2
