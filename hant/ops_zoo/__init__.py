"""The operation zoo: candidate families, their registry, and per-slot candidate lists."""
from .registry import CandidateFamily, build_candidate, get_family, list_families, load_plugins, register_family
from .spec import CandidateSpec, SlotSignature
from .zoo import build_zoo, slot_candidates, zoo_from_json, zoo_to_json

__all__ = [
    "CandidateFamily",
    "CandidateSpec",
    "SlotSignature",
    "build_candidate",
    "build_zoo",
    "get_family",
    "list_families",
    "load_plugins",
    "register_family",
    "slot_candidates",
    "zoo_from_json",
    "zoo_to_json",
]
