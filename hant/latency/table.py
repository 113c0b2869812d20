"""LatencyTable: the measured latencies of a run's candidates, tied to the target and device they came from.

Also ``profile``: measure what the persistent cache lacks and fill the cache.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

from torch import nn

from ..errors import ConfigError, LatencyError
from ..io import read_json, write_json
from .cache import LatencyCache
from .fingerprint import describe_fingerprint, device_fingerprint, fingerprint_id
from .measure import measure
from .stats import LatencyStat
from .target import LatencyTarget

log = logging.getLogger(__name__)

FORMAT = "hant.latency_table"
VERSION = 1

ModuleOrFactory = Union[nn.Module, Callable[[], nn.Module]]


@dataclass
class LatencyTable:
    """Latencies (uid -> LatencyStat) measured for one target on one device fingerprint."""

    target: LatencyTarget
    fingerprint: dict[str, Any]
    entries: dict[str, LatencyStat] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON-able data (e.g. the full network's measured latency)."""

    @property
    def fingerprint_id(self) -> str:
        return fingerprint_id(self.fingerprint)

    @property
    def block_scale(self) -> float:
        """Factor from a block's latency timed alone to its share of the whole network (calibrated; 1 if not)."""
        return float(self.extra.get("block_scale", 1.0))

    def measured_ms(self, uid: str) -> float:
        """Median latency of one entry as measured; LatencyError when the table lacks it."""
        stat = self.entries.get(uid)
        if stat is None:
            raise LatencyError(f"the latency table has no entry for candidate {uid!r}; re-run `hant profile`")
        return stat.median_ms

    def latency_ms(self, uid: str) -> float:
        """A candidate's share of the whole network: its measured median times :attr:`block_scale`.

        Summed with ``extra["fixed_ms"]`` this is the calibrated whole-network prediction.
        """
        return self.block_scale * self.measured_ms(uid)

    def transition_ms(self, slot_path: str, precision: str) -> float:
        """What running slot ``slot_path`` in ``precision`` costs the network beyond the block's own
        difference in the table (the conversions to and from its neighbours' precision, the fusions
        lost), times :attr:`block_scale`; 0 in the table's own precision or where it was not measured."""
        if precision == self.target.dtype:
            return 0.0
        return self.block_scale * float(self.extra.get("transitions_ms", {}).get(f"{slot_path}@{precision}", 0.0))

    def slot_option_ms(self, slot_path: str, uid: str, precision: str) -> float:
        """What the search charges entry ``uid`` run in ``precision`` in slot ``slot_path``: its
        :meth:`latency_ms` plus the slot's :meth:`transition_ms`, at least 0 (a transition measured as
        a difference of two networks can come out below the block's own saving)."""
        return max(0.0, self.latency_ms(uid) + self.transition_ms(slot_path, precision))

    def predict_ms(self, uids: Iterable[str]) -> float:
        """Predicted latency of the whole network whose slots hold these candidates: the correctly
        rounded sum (``math.fsum``) of ``extra["fixed_ms"]`` and their :meth:`latency_ms`, the same
        float the search computes for that selection."""
        return math.fsum([float(self.extra.get("fixed_ms", 0.0)), *(self.latency_ms(uid) for uid in uids)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target.to_dict(),
            "fingerprint": dict(self.fingerprint),
            "fingerprint_id": self.fingerprint_id,
            "entries": {uid: stat.to_dict() for uid, stat in self.entries.items()},
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyTable":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise LatencyError("this file is not a hant latency table; re-run `hant profile` to make one")
        if d.get("version") != VERSION:
            raise LatencyError(
                f"this latency table has format version {d.get('version')!r}, this hant reads {VERSION}; "
                "re-run `hant profile`"
            )
        try:
            target = LatencyTarget.from_dict(d["target"])
            entries = {str(uid): LatencyStat.from_dict(s) for uid, s in d["entries"].items()}
            return cls(target, dict(d["fingerprint"]), entries, dict(d.get("extra") or {}))
        except (KeyError, TypeError, AttributeError, ConfigError) as e:
            raise LatencyError(f"this latency table is malformed ({e}); re-run `hant profile`") from None

    def to_json(self, path: str | Path) -> None:
        """Write the table as JSON, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> "LatencyTable":
        """Read a table written by :meth:`to_json`."""
        try:
            data = read_json(path)
        except FileNotFoundError:
            raise LatencyError(f"no latency table at {path}; run `hant profile` first") from None
        except ValueError as e:
            raise LatencyError(f"the latency table {path} is not valid JSON ({e}); re-run `hant profile`") from None
        return cls.from_dict(data)

    def check_compatible(self, target: LatencyTarget, fingerprint: dict[str, Any]) -> None:
        """Raise LatencyError unless the table was measured for ``target`` on a device with ``fingerprint``."""
        if self.target != target:
            raise LatencyError(
                f"this latency table was measured for target {self.target.describe()}, "
                f"not for {target.describe()}; re-run `hant profile` for this target"
            )
        if fingerprint_id(self.fingerprint) != fingerprint_id(fingerprint):
            theirs, ours = describe_fingerprint(self.fingerprint), describe_fingerprint(fingerprint)
            if theirs == ours:
                keys = sorted(k for k in set(self.fingerprint) | set(fingerprint)
                              if self.fingerprint.get(k) != fingerprint.get(k))
                theirs += " with " + ", ".join(f"{k}={self.fingerprint.get(k)!r}" for k in keys)
                ours += " with " + ", ".join(f"{k}={fingerprint.get(k)!r}" for k in keys)
            raise LatencyError(
                f"this latency table was measured on {theirs}, not on this machine ({ours}); re-run `hant profile`"
            )


def _unique_entries(
    entries: Sequence[tuple[str, ModuleOrFactory, tuple[int, ...]]],
) -> list[tuple[str, ModuleOrFactory, tuple[int, ...]]]:
    seen: dict[str, tuple[int, ...]] = {}
    out = []
    for uid, obj, shape in entries:
        shape = tuple(int(s) for s in shape)
        if uid in seen:
            if seen[uid] != shape:
                raise LatencyError(
                    f"candidate {uid!r} is listed with input shapes {seen[uid]} and {shape}; give each its own uid"
                )
            continue
        seen[uid] = shape
        out.append((uid, obj, shape))
    return out


def _build(uid: str, obj: ModuleOrFactory) -> nn.Module:
    module = obj if isinstance(obj, nn.Module) else obj()
    if not isinstance(module, nn.Module):
        raise LatencyError(f"the factory of candidate {uid!r} returned {type(module).__name__}, not an nn.Module")
    return module


def profile(
    entries: Sequence[tuple[str, ModuleOrFactory, tuple[int, ...]]],
    target: LatencyTarget,
    cache: LatencyCache | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    **measure_kwargs: Any,
) -> tuple[dict[str, LatencyStat], int]:
    """Latencies of ``(uid, module or module factory, per-sample input shape)`` entries on ``target``.

    Entries found in ``cache`` (same device fingerprint, target, uid and shape) are not measured and
    their factories are never called; the misses are measured together, interleaved, by
    :func:`measure` (``measure_kwargs`` go there) and then stored in the cache.
    ``on_progress(done, total)`` counts cache hits plus measured entries whose median has converged.
    Returns (uid -> LatencyStat in the order of ``entries``, number of cache hits).
    """
    unique = _unique_entries(entries)
    total = len(unique)
    fp_id = fingerprint_id(device_fingerprint(target))
    cached = cache.get_many(fp_id, target, [(uid, shape) for uid, _, shape in unique]) if cache is not None else {}
    hits = {uid: cached[(uid, shape)] for uid, _, shape in unique if (uid, shape) in cached}
    misses = [(uid, obj, shape) for uid, obj, shape in unique if uid not in hits]
    if on_progress is not None:
        on_progress(len(hits), total)

    measured: dict[str, LatencyStat] = {}
    if misses:
        user_on_round = measure_kwargs.pop("on_round", None)
        best = [0]

        def on_round(converged: int, n: int) -> None:
            if user_on_round is not None:
                user_on_round(converged, n)
            best[0] = max(best[0], converged)  # keep the bar monotonic even if an item loosens again
            if on_progress is not None:
                on_progress(len(hits) + best[0], total)

        items = [(uid, _build(uid, obj), shape) for uid, obj, shape in misses]
        measured = measure(items, target, on_round=on_round, **measure_kwargs)
        if cache is not None:
            cache.put_many(fp_id, target, [(uid, shape, measured[uid]) for uid, _, shape in misses])
    if on_progress is not None:
        on_progress(total, total)
    log.info("latencies of %d candidate(s): %d from the cache, %d measured", total, len(hits), len(measured))
    result = {uid: hits[uid] if uid in hits else measured[uid] for uid, _, _ in unique}
    return result, len(hits)
