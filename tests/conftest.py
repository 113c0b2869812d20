"""Shared fixtures: an isolated latency cache, one CPU thread, a tiny teacher, a private family registry."""
from __future__ import annotations

import sys

import pytest
import torch

from hant.ops_zoo import registry
from hant.ops_zoo.registry import list_families


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own latency cache, so no test reads another's measurements."""
    monkeypatch.setenv("HANT_CACHE_DIR", str(tmp_path_factory.mktemp("hant-cache")))


@pytest.fixture(autouse=True, scope="session")
def _threads():
    """One intra-op thread: the test models are tiny, and on a shared 2-core machine a second
    thread waiting for a busy core made training steps up to 50 times slower."""
    torch.set_num_threads(1)


@pytest.fixture()
def tiny_resnet():
    """A timm ResNet small enough for millisecond forwards (random weights)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "resnet18", num_classes=10, in_chans=1, channels=(8, 16, 32, 64), layers=(1, 1, 1, 1), replace_stem_pool=True
    ).eval()


@pytest.fixture()
def isolated_registry(monkeypatch):
    """A private copy of the family registry (built-ins loaded; yielded), and plugin modules
    forgotten afterwards."""
    list_families()
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    before = set(sys.modules)
    yield registry._FAMILIES
    for name in set(sys.modules) - before:
        if name.startswith(("hant_plugin_", "user_zoo_module")):
            del sys.modules[name]
