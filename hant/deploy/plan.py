"""PrecisionPlan: which precision each part of a network runs in once deployed.

A network runs at a default precision (the target's dtype) except for the module paths listed with
another one, so a student can be mixed-precision: e.g. OpenVINO at float32 with some slots in int8.
Runtimes run one floating-point precision per network here, so the overrides can only switch between
the default and int8 (ONNX Runtime and OpenVINO quantize the listed nodes, or all but the listed ones).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from ..errors import DeployError
from .onnx import scope_prefix

INT8 = "int8"


@dataclass(frozen=True)
class PrecisionPlan:
    """A default precision and per-module-path exceptions (``((path, precision), ...)``, sorted)."""

    default: str
    overrides: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def of(cls, default: str, per_path: Mapping[str, str] | None = None) -> "PrecisionPlan":
        """The plan with ``per_path`` entries that differ from ``default``; raises for two floats mixed."""
        overrides = tuple(sorted((p, d) for p, d in (per_path or {}).items() if d != default))
        for path, dtype in overrides:
            if dtype != INT8 and default != INT8:
                raise DeployError(
                    f"module {path} is planned in {dtype} inside a {default} network; a runtime runs one floating "
                    f"precision per network here, so per-slot choices are {default} or int8"
                )
        floats = {d for _, d in overrides if d != INT8}
        if default == INT8 and len(floats) > 1:
            raise DeployError(f"an int8 network can keep slots in one floating precision only, not {sorted(floats)}")
        return cls(default, overrides)

    @property
    def uses_int8(self) -> bool:
        """True when any part of the network runs in int8."""
        return self.default == INT8 or any(d == INT8 for _, d in self.overrides)

    @property
    def float_dtype(self) -> str:
        """The floating precision of the parts that are not int8 (``float32`` for an all-int8 network)."""
        if self.default != INT8:
            return self.default
        return next((d for _, d in self.overrides if d != INT8), "float32")

    def int8_paths(self) -> list[str]:
        """Module paths whose nodes are quantized, when the default is a float."""
        return [p for p, d in self.overrides if d == INT8]

    def float_paths(self) -> list[str]:
        """Module paths whose nodes stay in floating point, when the default is int8."""
        return [p for p, d in self.overrides if d != INT8]

    def quantized_node(self, node_name: str) -> bool:
        """Whether the ONNX node ``node_name`` is quantized under this plan."""
        if self.default == INT8:
            return not any(node_name.startswith(scope_prefix(p)) for p in self.float_paths())
        return any(node_name.startswith(scope_prefix(p)) for p in self.int8_paths())

    def float_node_patterns(self) -> list[str]:
        """Regular expressions of the node names that stay in floating point (for NNCF's ignored scope)."""
        if self.default == INT8:
            return [re.escape(scope_prefix(p)) + ".*" for p in self.float_paths()]
        if not self.int8_paths():
            return [".*"]
        kept = "|".join(re.escape(scope_prefix(p)) for p in self.int8_paths())
        return [f"(?!{kept}).*"]

    def to_dict(self) -> dict:
        return {"default": self.default, "overrides": {p: d for p, d in self.overrides}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "PrecisionPlan":
        return cls.of(str(d["default"]), dict(d.get("overrides") or {}))

    def describe(self) -> str:
        """E.g. ``float32`` or ``float32, int8 in 3 modules``."""
        if not self.overrides:
            return self.default
        counts: dict[str, int] = {}
        for _, d in self.overrides:
            counts[d] = counts.get(d, 0) + 1
        rest = ", ".join(f"{d} in {n} module{'s' if n != 1 else ''}" for d, n in sorted(counts.items()))
        return f"{self.default}, {rest}"


def uniform(dtype: str) -> PrecisionPlan:
    """The plan of a network that runs wholly in ``dtype``."""
    return PrecisionPlan(dtype)


def with_precision(name: str, precision: str, default: str) -> str:
    """``name`` of something run in ``precision``: unchanged at the default, else ``name@precision``."""
    return name if precision == default else f"{name}@{precision}"


def split_precision(name: str, default: str) -> tuple[str, str]:
    """The inverse of :func:`with_precision`: ``(name, precision)``."""
    base, sep, precision = name.rpartition("@")
    return (base, precision) if sep else (name, default)
