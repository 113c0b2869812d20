"""The staged pipeline over a run directory (see ``runner`` for the skip/resume rule)."""
from .context import Context
from .rundir import RunDir
from .runner import STAGE_ORDER, STAGES, run_stages

__all__ = ["Context", "RunDir", "STAGES", "STAGE_ORDER", "run_stages"]
