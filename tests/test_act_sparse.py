"""Activation sparsity: masks, schedule, the masked block, the act_sparse family and a whole run."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from tiny import tiny_recipe

from hant.config import recipe_from_dict
from hant.errors import ZooError
from hant.io import read_json
from hant.ops_zoo import build_candidate, build_zoo
from hant.distill.trainer import evaluate
from hant.pipeline import Context, RunDir, run_stages
from hant.pipeline.stages import finetune_student, trained_candidates
from hant.slots import discover_slots, get_submodule
from hant.student import assemble_student, save_student
from hant.sparsity import MaskedConv2d, SparseBlock, draw_mask, ratio_at


def test_mask_drops_the_requested_share_of_pixels():
    for h, w, s in [(7, 7, 0.2), (56, 56, 0.3), (5, 3, 0.0), (4, 4, 0.99)]:
        mask = draw_mask(h, w, s)
        assert mask.shape == (h, w) and int((~mask).sum()) == int(s * h * w + 1e-9)


def test_ratio_grows_on_the_power_2_schedule():
    assert ratio_at(0, 100, 0.3) == 0.0 and ratio_at(10, 100, 0.3) == 0.0
    assert ratio_at(50, 100, 0.3) == pytest.approx(0.3 * (1 - 0.5**2))
    assert ratio_at(90, 100, 0.3) == pytest.approx(0.3) and ratio_at(99, 100, 0.3) == pytest.approx(0.3)


def _slots_and_zoo(tiny_resnet, ratios=(0.2,)):
    slots = discover_slots(tiny_resnet, torch.zeros(1, 1, 16, 16))
    return slots, build_zoo(tiny_resnet, slots, {"act_sparse": {"ratios": list(ratios)}})


def test_kernel_block_equals_masked_dense_block(tiny_resnet):
    slots, zoo = _slots_and_zoo(tiny_resnet)
    for slot in slots:
        spec = [s for s in zoo[slot.name] if s.family == "act_sparse"][0]
        block = build_candidate(spec, get_submodule(tiny_resnet, slot.path)).eval()
        masked = [m for m in block.modules() if isinstance(m, MaskedConv2d)]
        assert masked and all(int((~m.mask).sum()) == int(0.2 * m.mask.numel() + 1e-9) for m in masked)
        x = torch.randn(3, *slot.in_shape)
        with torch.no_grad():
            fast = block(x)
        for m in masked:
            m.training = True  # the masked dense path
        with torch.no_grad():
            dense = block(x)
        assert torch.allclose(fast, dense, atol=1e-5), slot.name


def test_schedule_freezes_the_best_masks(tiny_resnet):
    slots, zoo = _slots_and_zoo(tiny_resnet, (0.3,))
    spec = [s for s in zoo[slots[0].name] if s.family == "act_sparse"][0]
    block = build_candidate(spec, get_submodule(tiny_resnet, slots[0].path))
    assert isinstance(block, SparseBlock)
    total, seen = 100, {}
    for step in range(total):
        block.schedule_step(step, total)
        mask = block.masked()[0].mask.clone()
        if step == 0:
            assert bool(mask.all())
        if 90 <= step < 95:
            seen[step] = mask
            block.observe_loss(torch.tensor(float(abs(step - 92))))
    assert bool(block.frozen)
    assert torch.equal(block.masked()[0].mask, seen[92])


def test_bad_ratio_is_one_clear_error(tiny_resnet):
    with pytest.raises(ZooError, match=r"act_sparse\.ratios.*\[0, 1\)"):
        _slots_and_zoo(tiny_resnet, (1.0,))


def test_unsupported_layer_stays_dense_and_says_so(caplog):
    block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8))
    from hant.sparsity import sparsify_block
    from hant.sparsity.masked import dense_layers

    sparse = sparsify_block(block, (8, 6, 6), 0.2)
    assert isinstance(sparse.block[0], MaskedConv2d) and isinstance(sparse.block[1], torch.nn.Conv2d)
    assert dense_layers(block) == [("1", "it is a grouped convolution (groups=8); the masked kernel supports groups=1 only")]


def test_kernel_not_built_says_how_to_build(monkeypatch, tmp_path):
    from hant.kernels import build

    monkeypatch.setattr(build, "SOURCES", (tmp_path / "missing.cpp",))
    (tmp_path / "missing.cpp").write_text("this is not C++\n")
    build.build_kernels.cache_clear()
    try:
        with pytest.raises(build.KernelNotBuilt, match=r"python -m hant.kernels"):
            build.build_kernels()
    finally:
        build.build_kernels.cache_clear()


def test_a_run_with_act_sparse_saves_a_student_that_reloads(tmp_path):
    recipe = tiny_recipe(zoo={"families": {"act_sparse": {"ratios": [0.2]}, "pruned": {"widths": [0.5]}}},
                         search={"budget": 1.0, "verify_rounds": 2})
    ctx = Context(recipe_from_dict(recipe), RunDir(tmp_path / "run"))
    run_stages(ctx, "finetune")
    scores = read_json(ctx.run.scores)
    sparse = {s.name: [c for c in ctx.zoo[s.name] if c.family == "act_sparse"][0] for s in ctx.slots}
    assert all(scores[name][spec.key]["status"] == "ok" for name, spec in sparse.items())
    modules = trained_candidates(ctx, sparse)
    assert modules.keys() == sparse.keys() and all(bool(m.frozen) for m in modules.values())
    assert trained_candidates(ctx, {s.name: ctx.zoo[s.name][0] for s in ctx.slots}) == {}  # keep needs no module
    student = assemble_student(ctx.teacher, ctx.slots, sparse, modules).eval()
    save_student(student, tmp_path / "student", ctx.model_desc, ctx.slots, sparse)
    x = torch.randn(2, 1, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = student(x)
    torch.save(expected, tmp_path / "y.pt")
    code = (
        "import sys, torch, hant\n"
        "from hant.sparsity import MaskedConv2d\n"
        "m = hant.load_student(sys.argv[1])\n"
        "x, y = torch.load(sys.argv[2]), torch.load(sys.argv[3])\n"
        "with torch.no_grad():\n"
        "    assert torch.allclose(m(x), y, atol=1e-5)\n"
        "print(sum(isinstance(c, MaskedConv2d) for c in m.modules()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "student"), str(tmp_path / "x.pt"),
                          str(tmp_path / "y.pt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == sum(isinstance(c, MaskedConv2d) for c in student.modules()) > 0

    # phase 3 on this sparse student: the frozen masks stay, and the kept weights score as reported
    before = {n: m.mask.clone() for n, m in student.named_modules() if isinstance(m, MaskedConv2d)}
    ctx.recipe.finetune.epochs = 1
    metrics = finetune_student(ctx, student)
    assert metrics["kept"] in ("fine-tuned", "assembled") and len(metrics["history"]) == 1
    assert all(torch.equal(m.mask, before[n]) for n, m in student.named_modules() if isinstance(m, MaskedConv2d))
    assert metrics["test_accuracy"] == pytest.approx(evaluate(student, ctx.eval_loader("test")))


def test_training_path_holds_skipped_pixels_at_the_bias():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    masked = MaskedConv2d(conv, (5, 5), 0.4).train()
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    y = masked(x)
    skipped = ~masked.mask
    assert int(skipped.sum()) == 10
    assert torch.equal(y[:, :, skipped], conv.bias.view(1, 4, 1).expand(2, 4, 10).detach())
    y[:, :, skipped].sum().backward()
    assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(conv.weight.grad) == 0
