"""Latency measurement: interleaved timing on the target, a persistent cache, and per-run tables."""
from __future__ import annotations

from .cache import LatencyCache, default_cache_path
from .fingerprint import device_fingerprint, fingerprint_id
from .measure import measure
from .stats import LatencyStat
from .table import LatencyTable, profile
from .target import LatencyTarget

__all__ = [
    "LatencyCache",
    "LatencyStat",
    "LatencyTable",
    "LatencyTarget",
    "default_cache_path",
    "device_fingerprint",
    "fingerprint_id",
    "measure",
    "profile",
]
