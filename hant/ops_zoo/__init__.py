"""The operation zoo: candidate families, their registry, and per-slot candidate lists."""
from .check import CheckFailure, CheckReport, check_zoo
from .registry import CandidateFamily, build_candidate, find_plugins, get_family, list_families, load_plugins, register_family
from .spec import CandidateSpec, SlotSignature
from .zoo import build_zoo, default_families, slot_candidates, zoo_from_json, zoo_to_json

__all__ = [
    "CandidateFamily",
    "CandidateSpec",
    "CheckFailure",
    "CheckReport",
    "SlotSignature",
    "build_candidate",
    "build_zoo",
    "check_zoo",
    "default_families",
    "get_family",
    "list_families",
    "find_plugins",
    "load_plugins",
    "register_family",
    "slot_candidates",
    "zoo_from_json",
    "zoo_to_json",
]
