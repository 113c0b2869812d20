"""hant's latency package gives oneDNN a primitive cache large enough for interleaved measurement,
unless the user's environment already chose one."""
from __future__ import annotations

import os
import subprocess
import sys

from hant.latency.measure import ONEDNN_PRIMITIVE_CACHE

PROBE = "import os, hant.latency; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"


def capacity(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if env_value is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_importing_the_latency_package_raises_the_capacity() -> None:
    assert int(capacity(None)) == int(ONEDNN_PRIMITIVE_CACHE) > 1024


def test_a_capacity_the_environment_sets_is_kept() -> None:
    assert capacity("2048") == "2048"
