"""Phase 1 on a tiny teacher: candidates learn, finished ones are not retrained, NaN is contained,
both scores are stored, chunking and interruption leave results unchanged."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hant.config import DistillConfig
from hant.distill import layerwise
from hant.distill.layerwise import distill_zoo
from hant.ops_zoo import CandidateFamily, build_zoo, register_family
from hant.slots import discover_slots


@pytest.fixture()
def test_families(monkeypatch):
    """Register this file's test families in a copy of the registry, so other tests never see them."""
    from hant.ops_zoo import list_families, registry

    list_families()  # the built-in families register on first use: into the real registry
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    register_family("test_nan")(_NaNFamily)
    register_family("test_inplace")(_InPlaceFamily)


def _loaders(n: int = 192):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 32, 32, generator=g)
    data = TensorDataset(x, torch.zeros(n, dtype=torch.long))
    return DataLoader(data, batch_size=32, shuffle=True, generator=g), DataLoader(data, batch_size=48)


class _NaNFamily(CandidateFamily):
    """A candidate whose output is NaN: it must fail alone."""

    def candidates(self, slot):
        return [{}]

    def build(self, spec, teacher_block=None):
        sig = spec.signature

        class NaNOut(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(sig.in_shape[0], sig.out_shape[0], 1, sig.stride)

            def forward(self, x):
                return self.conv(x) * float("nan")

        return NaNOut()


def test_distillation_beats_untrained_and_resumes_without_retraining(tiny_resnet, tmp_path, monkeypatch, test_families):
    slots = discover_slots(tiny_resnet, torch.randn(2, 1, 32, 32))[:2]
    zoo = build_zoo(tiny_resnet, slots, {"conv_bn_act": {"kernels": [3]}, "identity": {}, "test_nan": {}})
    train, val = _loaders()
    cfg = DistillConfig(epochs=4, lr=5e-3)
    untrained = distill_zoo(tiny_resnet, slots, zoo, train, val, DistillConfig(epochs=0), tmp_path / "untrained")
    trained = distill_zoo(tiny_resnet, slots, zoo, train, val, cfg, tmp_path / "w")
    for slot in slots:
        key = "conv_bn_act[k=3]"
        assert trained[slot.name][key].status == "ok"
        assert trained[slot.name][key].score < 0.7 * untrained[slot.name][key].score
        assert trained[slot.name]["keep"].score == 0.0
    for slot in slots:
        assert trained[slot.name]["test_nan"].status == "failed"
        assert "nan" in trained[slot.name]["test_nan"].error

    calls = []
    real = layerwise.train_chunk
    monkeypatch.setattr(layerwise, "train_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = distill_zoo(tiny_resnet, slots, zoo, train, val, cfg, tmp_path / "w")
    assert calls == []
    for slot in slots:
        for key, rec in trained[slot.name].items():
            assert again[slot.name][key].score == rec.score


def test_teacher_is_left_untouched(tiny_resnet, tmp_path):
    before = {k: v.clone() for k, v in tiny_resnet.state_dict().items()}
    slots = discover_slots(tiny_resnet, torch.randn(2, 1, 32, 32))[:1]
    zoo = build_zoo(tiny_resnet, slots, {"pruned": {"widths": [0.5]}})
    train, val = _loaders(64)
    distill_zoo(tiny_resnet, slots, zoo, train, val, DistillConfig(epochs=1), tmp_path)
    after = tiny_resnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in tiny_resnet.parameters())


def _calibrated(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give a random teacher non-zero BatchNorm scales (timm zeroes each block's last one) and
    statistics of real activations, so its blocks are not identities and distillation is meaningful."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def _labelled_loaders(n: int = 160):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    train = DataLoader(TensorDataset(x[: n - 48], y[: n - 48]), batch_size=32, shuffle=True, generator=g)
    return train, DataLoader(TensorDataset(x[n - 48 :], y[n - 48 :]), batch_size=24), x


def _teacher() -> nn.Module:
    """tiny_resnet with two blocks in its first stage, so the second keeps its shape (identity fits)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "resnet18", num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=(2, 1, 1, 1), replace_stem_pool=True
    ).eval()


def _problem(n_slots: int = 2):
    train, val, x = _labelled_loaders()
    teacher = _calibrated(_teacher(), x)
    slots = discover_slots(teacher, torch.randn(2, 1, 32, 32))[1 : 1 + n_slots]
    zoo = build_zoo(teacher, slots, {"identity": {}, "pruned": {"widths": [0.5]}, "conv_bn_act": {"kernels": [1, 3]}})
    return teacher, slots, zoo, train, val


def _numbers(records):
    return {(s, k): (r.status, r.train_loss, r.feature_loss, r.swap_kl, r.swap_accuracy)
            for s, recs in records.items() for k, r in recs.items()}


def test_both_scores_are_stored_and_the_recipe_picks_the_one_the_search_sees(tmp_path, monkeypatch):
    from hant.distill.trainer import evaluate

    teacher, slots, zoo, train, val = _problem()
    by_nmse = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2, lr=5e-3), tmp_path)
    monkeypatch.setattr(layerwise, "train_chunk", lambda *a, **k: pytest.fail("finished candidates were retrained"))
    by_kl = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2, lr=5e-3, score="swap_kl"), tmp_path)
    accuracy = evaluate(teacher, val)
    for slot in slots:
        keep = by_kl[slot.name]["keep"]
        assert (keep.score, keep.swap_kl, keep.feature_loss) == (0.0, 0.0, 0.0)
        assert keep.swap_accuracy == pytest.approx(accuracy)
        for key, rec in by_kl[slot.name].items():
            assert rec.status in ("ok", "exact")
            assert rec.score == rec.swap_kl and by_nmse[slot.name][key].score == rec.feature_loss
            assert rec.swap_kl >= 0 and 0 <= rec.swap_accuracy <= 100
    identity = by_kl[slots[0].name]["identity"]
    assert identity.swap_kl > 0 and identity.feature_loss > 0
    assert _numbers(by_nmse) == _numbers(by_kl)
    by_error = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2, lr=5e-3, score="swap_error"), tmp_path)
    assert _numbers(by_error) == _numbers(by_kl)
    for slot in slots:
        assert by_error[slot.name]["keep"].score == pytest.approx(100.0 - accuracy)  # keep is scored like the rest
        for rec in by_error[slot.name].values():
            assert rec.score == pytest.approx(100.0 - rec.swap_accuracy)


def test_swap_in_logits_equal_the_teacher_with_the_block_replaced_without_rerunning_the_stem(tiny_resnet):
    from hant.distill.capture import SlotCapture
    from hant.distill.swap import SwapIn

    teacher = tiny_resnet
    slots = discover_slots(teacher, torch.randn(2, 1, 32, 32))
    x = torch.randn(8, 1, 32, 32)
    swap = SwapIn(teacher, slots, x)
    stem_calls = []
    teacher.conv1.register_forward_hook(lambda *a: stem_calls.append(1))
    real_conv = teacher.conv1._conv_forward
    teacher.conv1._conv_forward = lambda *a: stem_calls.append("computed") or real_conv(*a)
    torch.manual_seed(0)
    with SlotCapture(teacher, slots, extra=swap.points) as capture:
        swap.calibrate(capture, x)
        io = capture.run(x)
        for slot in slots[1:]:
            block = teacher.get_submodule(slot.path)
            replacement = nn.Conv2d(slot.in_shape[0], slot.out_shape[0], 3, slot.stride, 1).eval()
            stem_calls.clear()
            got = swap.logits(slot.name, x, capture.extra, replacement(io[slot.name][0]))
            assert "computed" not in stem_calls, "the layers before the slot ran again"
            parent, _, child = slot.path.rpartition(".")
            setattr(teacher.get_submodule(parent), child, replacement)
            try:
                want = teacher(x)
            finally:
                setattr(teacher.get_submodule(parent), child, block)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


class _LongSkip(nn.Module):
    """A prefix value is reused after the slot, changed in place there, and an activation is shared."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        y = self.act(self.a(x))
        z = self.act(self.b(y)) + y
        y.mul_(2)
        return self.head((self.c(z) + y).mean((2, 3)))


def test_swap_in_replay_survives_in_place_changes_after_the_slot():
    from hant.distill.capture import SlotCapture
    from hant.distill.swap import SwapIn

    torch.manual_seed(0)
    model = _LongSkip().eval()
    slots = discover_slots(model, torch.randn(2, 3, 8, 8), ["b"])
    x = torch.randn(4, 3, 8, 8)
    swap = SwapIn(model, slots, x)
    with SlotCapture(model, slots, extra=swap.points) as capture:
        swap.calibrate(capture, x)
        assert swap.available["b"] and swap.plans["b"] and swap.clone["b"]
        io = capture.run(x)
        for _ in range(2):
            assert torch.equal(swap.logits("b", x, capture.extra, io["b"][1].clone()), capture.logits)


def test_chunking_by_count_or_memory_leaves_scores_unchanged(tmp_path, caplog):
    teacher, slots, zoo, train, val = _problem()
    together = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2), tmp_path / "a")
    with caplog.at_level("WARNING"):
        alone = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2, memory_budget_mb=1e-3), tmp_path / "b")
    assert "training it alone" in caplog.text
    pairs = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=2, chunk_size=2), tmp_path / "c")
    assert _numbers(together) == _numbers(alone) == _numbers(pairs)


def test_chunks_respect_count_and_memory_budget():
    from hant.distill.memory import Footprint, footprint, pack_chunks

    fps = [Footprint(100, 50)] * 5
    assert pack_chunks(list("abcde"), fps, ["s"] * 5, {"s": 10}, 2, None) == [["a", "b"], ["c", "d"], ["e"]]
    assert pack_chunks(list("abcde"), fps, ["s"] * 5, {"s": 10}, 9, 10 + 50 + 300) == [["a", "b", "c"], ["d", "e"]]
    assert pack_chunks(list("ab"), fps[:2], ["s", "t"], {"s": 10, "t": 10}, 9, 10 + 50 + 200) == [["a"], ["b"]]
    conv = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    small, big = footprint(conv, (4, 8, 8), 2), footprint(conv, (4, 8, 8), 8)
    params = sum(p.numel() for p in conv.parameters())
    buffers = sum(b.numel() * b.element_size() for b in conv.buffers())
    assert small.state == big.state == 4 * 4 * params + buffers
    assert big.transient == 4 * small.transient > 0


def test_killed_run_resumes_from_its_epoch_checkpoints_with_the_same_scores(tmp_path, monkeypatch):
    from hant.distill.chunk import ChunkTrainer

    teacher, slots, zoo, train, val = _problem()
    cfg = DistillConfig(epochs=3, lr=5e-3, chunk_size=3)
    straight = distill_zoo(teacher, slots, zoo, train, val, cfg, tmp_path / "straight")

    real_step, calls = ChunkTrainer.step, []

    def dying_step(self, x, step):
        calls.append(step)
        if len(calls) == 11:  # chunk 1 epoch 3 of 3: two epochs are checkpointed
            raise KeyboardInterrupt
        real_step(self, x, step)

    monkeypatch.setattr(ChunkTrainer, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        distill_zoo(teacher, slots, zoo, train, val, cfg, tmp_path / "killed")
    assert list((tmp_path / "killed" / "progress").glob("*.safetensors"))
    monkeypatch.setattr(ChunkTrainer, "step", real_step)
    resumed_steps = []
    monkeypatch.setattr(ChunkTrainer, "step", lambda self, x, step: resumed_steps.append(step) or real_step(self, x, step))
    resumed = distill_zoo(teacher, slots, zoo, train, val, cfg, tmp_path / "killed")
    assert resumed_steps[0] == 2 * len(train), "the interrupted chunk resumes after its checkpointed epochs"
    assert _numbers(resumed) == _numbers(straight)


def test_epoch_order_depends_only_on_seed_and_epoch():
    from hant.distill.stream import EpochStream

    data = TensorDataset(torch.arange(40.0).view(40, 1))
    loader = DataLoader(data, batch_size=8, shuffle=True)
    a, b = EpochStream(loader, seed=1), EpochStream(loader, seed=1)
    first = [t.clone() for t in a.epoch(0)]
    list(a.epoch(1))
    assert all(torch.equal(u, v) for u, v in zip(first, b.epoch(0)))
    assert not torch.equal(torch.cat(first), torch.cat(list(b.epoch(1))))
    assert sorted(torch.cat(first).flatten().tolist()) == list(range(40))
    noisy = EpochStream(loader, seed=1, augment=lambda x: x + torch.rand_like(x))
    assert all(torch.equal(u, v) for u, v in zip(noisy.epoch(2), noisy.epoch(2)))


def test_unknown_score_is_a_config_error(tiny_resnet, tmp_path):
    from hant.errors import ConfigError

    train, val = _loaders(32)
    with pytest.raises(ConfigError, match="distill.score"):
        distill_zoo(tiny_resnet, [], {}, train, val, DistillConfig(score="kl"), tmp_path)


class _InPlaceFamily(CandidateFamily):
    """A candidate that changes the captured input in place: phase 1 must refuse it clearly."""

    def candidates(self, slot):
        return [{}] if tuple(slot.in_shape) == tuple(slot.out_shape) else []

    def build(self, spec, teacher_block=None):
        c = spec.signature.in_shape[0]
        return nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(c, c, 1))


def test_candidate_changing_its_input_in_place_is_a_clear_error(tmp_path, test_families):
    from hant.distill.chunk import DistillError

    teacher = _teacher()
    slots = discover_slots(teacher, torch.randn(2, 1, 32, 32))[1:2]
    zoo = build_zoo(teacher, slots, {"test_inplace": {}})
    assert len(zoo[slots[0].name]) == 2
    train, val = _loaders(64)
    with pytest.raises(DistillError, match="in place"):
        distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=1), tmp_path)


def test_per_slot_losses_reach_an_active_wandb_run(tmp_path, monkeypatch):
    import wandb
    from wandb_records import logged_keys

    from hant.tracking import log_slot_losses, slot_loss_metrics

    assert slot_loss_metrics([("a", 1.0), ("a", 3.0), ("b", None)]) == {
        "distill/a/loss_mean": 2.0, "distill/a/loss_min": 1.0, "distill/a/failed": 0, "distill/b/failed": 1,
    }
    monkeypatch.setattr(wandb, "run", None)
    assert not log_slot_losses(0, [("a", 1.0)])
    run = wandb.init(mode="offline", dir=str(tmp_path), project="hant-test", reinit="finish_previous")
    try:
        assert log_slot_losses(0, [("layer1.0", 0.5), ("layer1.0", 0.25)])
    finally:
        run.finish()
    deadline = time.time() + 60  # the wandb service may still be writing the run file after finish()
    history: dict = {}
    while "distill/layer1.0/loss_min" not in history and time.time() < deadline:
        time.sleep(0.2)
        files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
        history = logged_keys(files[0])[0] if files else {}
    assert float(history["distill/layer1.0/loss_min"]) == 0.25
    assert float(history["distill/layer1.0/loss_mean"]) == 0.375


def test_changed_training_settings_retrain_instead_of_reusing_stale_weights(tmp_path, monkeypatch):
    teacher, slots, zoo, train, val = _problem(n_slots=1)
    distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=1), tmp_path)
    calls = []
    real = layerwise.train_chunk
    monkeypatch.setattr(layerwise, "train_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=1, chunk_size=7, score="swap_kl"), tmp_path)
    assert calls == [], "chunking and the choice of score do not change trained weights"
    distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=1, lr=1e-2), tmp_path)
    assert calls, "weights trained with another learning rate were reused"


def test_identical_slots_keep_their_own_trained_weights_and_scores(tmp_path):
    """layer1.1 and layer1.2 have the same shapes, so their candidates share uids; each slot still
    trains, stores and scores its own copy, against its own teacher block."""
    import timm

    from hant.distill.checkpoint import weights_path
    from hant.io import load_tensors

    train, val, x = _labelled_loaders()
    torch.manual_seed(0)
    teacher = timm.create_model("resnet18", num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=(3, 1, 1, 1),
                                replace_stem_pool=True).eval()
    teacher = _calibrated(teacher, x)
    slots = [s for s in discover_slots(teacher, torch.randn(2, 1, 32, 32)) if s.name in ("layer1.1", "layer1.2")]
    zoo = build_zoo(teacher, slots, {"conv_bn_act": {"kernels": [1, 3]}})
    first, second = slots
    shared = [spec for spec in zoo[first.name] if spec.family == "conv_bn_act"
              and spec.uid in {s.uid for s in zoo[second.name]}]
    assert shared, "the test needs two slots whose candidates share a uid"
    records = distill_zoo(teacher, slots, zoo, train, val, DistillConfig(epochs=1, lr=5e-3), tmp_path)
    trained = [(slot, spec) for slot in slots for spec in zoo[slot.name] if spec.family == "conv_bn_act"]
    assert len(list(tmp_path.glob("*.safetensors"))) == len(trained)
    for slot in slots:
        assert all(record.slot == slot.name for record in records[slot.name].values())
    for spec in shared:
        a, b = (load_tensors(weights_path(tmp_path, slot.name, spec)) for slot in slots)
        assert any(not torch.equal(a[name], b[name]) for name in a)
        assert records[first.name][spec.key].feature_loss != records[second.name][spec.key].feature_loss
