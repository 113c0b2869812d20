"""Errors meant for users: each carries one actionable sentence that the CLI prints as is."""
from __future__ import annotations


class HantError(Exception):
    """Base class of every error hant raises on purpose."""


class ConfigError(HantError):
    """A recipe or command-line setting is wrong (unknown key, bad value, missing file)."""


class SlotDiscoveryError(HantError):
    """No replaceable block could be found in a model, or a slot pattern matched nothing."""


class ZooError(HantError):
    """A candidate family is unknown, or a candidate cannot be built for a slot."""


class LatencyError(HantError):
    """A latency target cannot be measured here, or a table was made on another device."""


class SearchError(HantError):
    """The integer program has no solution or was given a malformed problem."""


class InfeasibleBudgetError(SearchError):
    """No choice of candidates fits the latency budget."""

    def __init__(self, budget_ms: float, min_latency_ms: float):
        self.budget_ms = budget_ms
        self.min_latency_ms = min_latency_ms
        super().__init__(
            f"no selection fits the budget of {budget_ms:.3f} ms; the smallest achievable "
            f"latency is {min_latency_ms:.3f} ms, so raise the budget to at least that"
        )


class RunDirError(HantError):
    """A run directory lacks the output of a stage that the requested stage reads."""


class DeployError(HantError):
    """A network cannot be exported, quantized or compiled for its target runtime and precision."""


class FileFormatError(HantError):
    """A file hant wrote or reads is damaged or unreadable (truncated, not the expected format)."""


class PluginError(HantError):
    """A recipe or saved student names plugins (executed code) that the caller did not allow."""


class ModelError(HantError):
    """A user's model cannot serve as a teacher (its forward fails on the example input, it cannot be saved)."""


class DataError(HantError):
    """A user's data does not fit the model: a batch of the wrong shape, no labels where labels are needed."""


class PruneError(HantError):
    """A network, or part of it, that whole-network channel pruning cannot handle."""
