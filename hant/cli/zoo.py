"""``hant zoo``: the zoo stage of a run directory."""
from __future__ import annotations

import argparse

from .pipeline import STAGE_HELP, add_stage_arguments, cmd_stage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help=STAGE_HELP["zoo"], description=STAGE_HELP["zoo"])
    p.add_argument("run_dir", help="run directory")
    add_stage_arguments(p)
    p.set_defaults(func=cmd_stage)
