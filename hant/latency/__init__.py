"""Latency measurement: interleaved timing on the target, a persistent cache, and per-run tables."""
from __future__ import annotations

from .cache import LatencyCache, default_cache_path
from .calibration import Calibration, fit_calibration
from .fingerprint import device_fingerprint, fingerprint_id
from .measure import measure
from .network import SlotOptions, profile_network
from .stats import LatencyStat
from .table import LatencyTable, profile
from .target import LatencyTarget

__all__ = [
    "Calibration",
    "LatencyCache",
    "LatencyStat",
    "LatencyTable",
    "LatencyTarget",
    "SlotOptions",
    "default_cache_path",
    "device_fingerprint",
    "fit_calibration",
    "fingerprint_id",
    "measure",
    "profile",
    "profile_network",
]
