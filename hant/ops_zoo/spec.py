"""CandidateSpec: plain data naming one replacement for one slot, with a stable key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..io import hash_obj
from ..slots import Slot, spatial_stride


@dataclass(frozen=True)
class SlotSignature:
    """What a candidate must fit: the slot's kind, shapes and the teacher block's structure."""

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    block_type: str
    block_hash: str
    out_nonnegative: bool = False

    @classmethod
    def of(cls, slot: Slot) -> "SlotSignature":
        return cls(
            slot.kind, tuple(slot.in_shape), tuple(slot.out_shape), slot.block_type, slot.block_hash, slot.out_nonnegative
        )

    @property
    def stride(self) -> int:
        return spatial_stride(self.in_shape, self.out_shape)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "block_type": self.block_type,
            "block_hash": self.block_hash,
            "out_nonnegative": self.out_nonnegative,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SlotSignature":
        return cls(
            d["kind"],
            tuple(d["in_shape"]),
            tuple(d["out_shape"]),
            d["block_type"],
            d["block_hash"],
            bool(d.get("out_nonnegative", False)),
        )


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate operation for a slot: a registered family, its parameters, the slot's signature.

    ``key`` is readable and unique within a slot (``"mbconv[act=relu,e=4,k=3,se=0]"``); ``uid``
    also covers the signature, so it is unique across slots and models (latency cache, weight files).
    """

    family: str
    params: dict = field(hash=False)
    signature: SlotSignature

    @property
    def key(self) -> str:
        if not self.params:
            return self.family
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.family}[{inner}]"

    @property
    def uid(self) -> str:
        return hash_obj({"key": self.key, "signature": self.signature.to_dict()})

    def to_dict(self) -> dict:
        return {"family": self.family, "params": dict(self.params), "signature": self.signature.to_dict(), "key": self.key}

    @classmethod
    def from_dict(cls, d: dict) -> "CandidateSpec":
        spec = cls(d["family"], dict(d["params"]), SlotSignature.from_dict(d["signature"]))
        if "key" in d and d["key"] != spec.key:
            raise ValueError(f"candidate key {d['key']!r} does not match its parameters ({spec.key!r})")
        return spec
