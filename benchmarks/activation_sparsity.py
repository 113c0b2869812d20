"""Speed of semi-structured activation sparsity: the compiled masked convolution per layer and in
whole networks, on one CPU thread.

Per layer: every distinct groups=1 3×3 convolution of timm ResNet-18 at 224 px (batch 1) and of the
demo's ResNet-18 (32 px, one channel, strided stem, batch 64), each timed as torch's dense
``F.conv2d``, the kernel with every pixel kept (its own dense path, s = 0) and the kernel at
s = 0.1 / 0.2 / 0.3. Whole networks: timm ``resnet18`` and ``mobilenetv2_100`` at 224 px, batch 1,
with every groups=1 convolution masked at s (untrained random masks; depthwise ones stay dense),
against the unmodified network in torch and against the same network at s = 0.
Time: the thread's CPU time per call, the median of ``--rounds`` rounds; each round times every
variant of a layer (or network) once, in a fresh random order, for at least 0.1 s, after a warm-up. Run it alone (``flock /tmp/hant-measure.lock``):

    .venv/bin/python benchmarks/activation_sparsity.py [--rounds 15] [--skip-networks]

The last line printed is a JSON object with every speed-up.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

from hant.kernels import masked_conv2d
from hant.sparsity import draw_mask, sparsify_block

RATIOS = (0.1, 0.2, 0.3)


def interleaved_ms(fns: dict[str, Callable[[], object]], rounds: int, min_sample_s: float = 0.1) -> dict[str, float]:
    """Milliseconds per call of every function in ``fns``: the median over ``rounds`` rounds, each
    round timing every function once (in a fresh random order) for at least ``min_sample_s`` of the
    thread's CPU time, so the machine's drift falls on all of them alike."""
    reps = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        start, n = time.thread_time(), 0
        while time.thread_time() - start < min_sample_s / 4:
            fn()
            n += 1
        reps[name] = max(1, int(min_sample_s / ((time.thread_time() - start) / n)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = random.Random(0)
    names = list(fns)
    for _ in range(rounds):
        order.shuffle(names)
        for name in names:
            fn, k = fns[name], reps[name]
            t0 = time.thread_time()
            for _ in range(k):
                fn()
            samples[name].append((time.thread_time() - t0) / k)
    return {name: 1e3 * statistics.median(v) for name, v in samples.items()}


def conv_shapes(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """Distinct (cin, cout, stride, input H, W) of the groups=1 3×3 convolutions of ``model`` on ``x``."""
    found: dict[tuple, dict] = {}

    def record(mod: nn.Conv2d, inp: tuple, out: torch.Tensor) -> None:
        key = (mod.in_channels, mod.out_channels, mod.stride[0], *inp[0].shape[2:])
        found.setdefault(key, {"cin": mod.in_channels, "cout": mod.out_channels, "stride": mod.stride[0],
                               "h": inp[0].shape[2], "w": inp[0].shape[3], "oh": out.shape[2], "ow": out.shape[3]})

    hooks = [m.register_forward_hook(record) for m in model.modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.groups == 1]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return list(found.values())


def time_layer(shape: dict, batch: int, rounds: int) -> dict:
    """Milliseconds of torch's dense convolution, the kernel at s = 0 and at each ratio."""
    x = torch.randn(batch, shape["cin"], shape["h"], shape["w"])
    w = torch.randn(shape["cout"], shape["cin"], 3, 3) * 0.05
    b = torch.randn(shape["cout"])
    st = (shape["stride"],) * 2
    row = dict(shape, batch=batch)
    fns = {"torch_ms": lambda: F.conv2d(x, w, b, st, (1, 1))}
    for s in (0.0, *RATIOS):
        idx = draw_mask(shape["oh"], shape["ow"], s).flatten().nonzero().flatten()
        fns[f"kernel_s{s:g}_ms"] = lambda idx=idx: masked_conv2d(x, w, b, idx, st, (1, 1))
    with torch.no_grad():
        row.update(interleaved_ms(fns, rounds))
    for s in RATIOS:
        row[f"vs_own_dense_s{s:g}"] = row["kernel_s0_ms"] / row[f"kernel_s{s:g}_ms"]
        row[f"vs_torch_s{s:g}"] = row["torch_ms"] / row[f"kernel_s{s:g}_ms"]
    return row


def masked_network(model: nn.Module, x: torch.Tensor, ratio: float) -> nn.Module:
    """``model`` with every groups=1 convolution masked at ``ratio`` (one mask per convolution)."""
    return sparsify_block(model, tuple(x.shape[1:]), ratio).eval()


def time_network(name: str, rounds: int) -> dict:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)
    row = {"model": name}
    fns = {"torch_ms": lambda: model(x)}
    for s in (0.0, *RATIOS):
        fns[f"kernel_s{s:g}_ms"] = lambda net=masked_network(model, x, s): net(x)
    with torch.no_grad():
        row.update(interleaved_ms(fns, rounds))
    for s in RATIOS:
        row[f"vs_own_dense_s{s:g}"] = row["kernel_s0_ms"] / row[f"kernel_s{s:g}_ms"]
        row[f"vs_torch_s{s:g}"] = row["torch_ms"] / row[f"kernel_s{s:g}_ms"]
    return row


def aggregate(rows: list[dict], weights: list[int]) -> dict:
    """Speed-ups of the summed layer times (each layer counted ``weights`` times)."""
    total = {k: sum(r[k] * n for r, n in zip(rows, weights)) for k in rows[0] if k.endswith("_ms")}
    out = {}
    for s in RATIOS:
        out[f"vs_own_dense_s{s:g}"] = total["kernel_s0_ms"] / total[f"kernel_s{s:g}_ms"]
        out[f"vs_torch_s{s:g}"] = total["torch_ms"] / total[f"kernel_s{s:g}_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--skip-networks", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    result: dict = {"threads": 1, "ratios": list(RATIOS)}
    imagenet = timm.create_model("resnet18", pretrained=False)
    demo = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=10, replace_stem_pool=True)
    for label, model, x, batch in (("resnet18_224_b1", imagenet, torch.zeros(1, 3, 224, 224), 1),
                                   ("demo_resnet18_32_b64", demo, torch.zeros(1, 1, 32, 32), 64)):
        shapes = conv_shapes(model, x)
        counts = [sum(1 for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
                      and (m.in_channels, m.out_channels, m.stride[0]) == (s["cin"], s["cout"], s["stride"]))
                  for s in shapes]
        rows = [time_layer(s, batch, args.rounds) for s in shapes]
        for r in rows:
            print(f"{label} {r['cin']}->{r['cout']} s{r['stride']} {r['h']}px: torch {r['torch_ms']:.3f} ms, "
                  f"kernel dense {r['kernel_s0_ms']:.3f} ms, "
                  + ", ".join(f"s={s:g} {r[f'kernel_s{s:g}_ms']:.3f} ms ({r[f'vs_own_dense_s{s:g}']:.2f}x own, "
                              f"{r[f'vs_torch_s{s:g}']:.2f}x torch)" for s in RATIOS), flush=True)
        result[label] = {"layers": rows, "all_3x3": aggregate(rows, counts)}
    if not args.skip_networks:
        for name in ("resnet18", "mobilenetv2_100"):
            row = time_network(name, args.rounds)
            print(f"{name}: torch {row['torch_ms']:.2f} ms, kernel dense {row['kernel_s0_ms']:.2f} ms, "
                  + ", ".join(f"s={s:g} {row[f'kernel_s{s:g}_ms']:.2f} ms ({row[f'vs_own_dense_s{s:g}']:.2f}x own, "
                              f"{row[f'vs_torch_s{s:g}']:.2f}x torch)" for s in RATIOS), flush=True)
            result[name] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
