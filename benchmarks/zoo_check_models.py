"""``hant zoo MODEL --check`` over a sample of timm vision models: every one must end in a report
or one ``hant: error:`` line, never a traceback.

The sample takes, for each architecture prefix in ``PREFIXES`` (CNN and ViT families that
``timm.list_models()`` lists), the first model name timm lists under it, at its default input
size and random weights. Each model runs in its own process with a time limit; its outcome is one
of ``report`` (exit 0: every candidate built and ran), ``failures-reported`` (exit 1: the check
named failing candidates), ``one-line-error`` (exit 2 with a single ``hant: error:`` line),
``traceback`` or ``timeout``. Results are appended to ``--out`` as JSON lines as they come, so a
sweep cut short still reports what it did.

    flock /tmp/hant-measure.lock .venv/bin/python benchmarks/zoo_check_models.py [--limit 45] [--timeout 240]

The last line printed is a JSON object: models tried, the count per outcome, and the tracebacks.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import timm

PREFIXES = (
    "resnet", "resnext", "wide_resnet", "seresnet", "resnetv2", "regnetx", "regnety", "densenet", "dla", "dpn",
    "vgg", "inception_v3", "xception", "efficientnet_b", "efficientnetv2", "tf_efficientnet_lite", "mobilenetv2",
    "mobilenetv3", "mobilenetv4", "mnasnet", "fbnetc", "ghostnet", "mixnet", "hrnet", "rexnet", "convnext",
    "convnextv2", "cspresnet", "cspdarknet", "darknet", "res2net", "resnest", "nfnet", "nf_resnet", "repvgg",
    "hardcorenas", "lcnet", "tinynet", "vit_tiny", "vit_small", "deit_tiny", "deit3", "beit", "swin_tiny",
    "levit", "mobilevit", "poolformer", "convit", "cait", "pit", "tnt", "crossvit", "twins", "coat", "xcit",
    "efficientformer", "fastvit", "edgenext", "maxvit", "coatnet",
)


def sample(limit: int) -> list[str]:
    """The first model timm lists under each prefix, up to ``limit`` models."""
    names = timm.list_models()
    picked = []
    for prefix in PREFIXES:
        match = next((n for n in names if n.startswith(prefix) and n not in picked), None)
        if match:
            picked.append(match)
    return picked[:limit]


def outcome(rc: int, stderr: str) -> str:
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if rc == 0:
        return "report"
    if rc == 1:
        return "failures-reported"
    lines = [line for line in stderr.splitlines() if line.startswith("hant: error:")]
    return "one-line-error" if rc == 2 and len(lines) == 1 else f"other-exit-{rc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=45)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per model")
    parser.add_argument("--out", default="benchmarks/zoo_check_models.jsonl")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    for model in sample(args.limit):
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "hant.cli", "zoo", model, "--check"], env=env,
                                  capture_output=True, text=True, timeout=args.timeout)
            result, tail = outcome(proc.returncode, proc.stderr), proc.stderr.strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            result, tail = "timeout", []
        row = {"model": model, "outcome": result, "seconds": round(time.perf_counter() - start, 1), "last_line": tail}
        rows.append(row)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{model:<36} {result:<18} {row['seconds']:7.1f} s  {tail[0][:100] if tail else ''}", flush=True)
    counts = collections.Counter(r["outcome"] for r in rows)
    print(json.dumps({"models": len(rows), "outcomes": dict(counts),
                      "tracebacks": [r["model"] for r in rows if r["outcome"] == "traceback"]}))


if __name__ == "__main__":
    main()
