"""hant: hardware-aware network transformation for PyTorch vision models."""
from .api import Result, optimize, prune
from .errors import HantError
from .latency.target import LatencyTarget
from .ops_zoo import CandidateFamily, CandidateSpec, register_family
from .search.problem import Selection
from .slots import Slot, discover_slots, register_block_type
from .student import load_student
from .user_data import UserData

__version__ = "0.1.0"

__all__ = [
    "CandidateFamily",
    "CandidateSpec",
    "HantError",
    "LatencyTarget",
    "Result",
    "Selection",
    "Slot",
    "UserData",
    "discover_slots",
    "load_student",
    "optimize",
    "prune",
    "register_block_type",
    "register_family",
]
