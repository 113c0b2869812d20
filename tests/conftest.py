"""Shared fixtures: an isolated latency cache, two CPU threads, and a tiny trained teacher."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own latency cache, so no test reads another's measurements."""
    monkeypatch.setenv("HANT_CACHE_DIR", str(tmp_path_factory.mktemp("hant-cache")))


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)


@pytest.fixture()
def tiny_resnet():
    """A timm ResNet small enough for millisecond forwards (random weights)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "resnet18", num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=(1, 1, 1, 1), replace_stem_pool=True
    ).eval()
