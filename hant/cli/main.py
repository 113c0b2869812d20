"""The ``hant`` command line: ``hant run RECIPE`` for the whole pipeline, one subcommand per stage."""
from __future__ import annotations

import argparse
import logging
import sys

import torch.distributed

from ..distributed import init_from_env, rank
from ..errors import HantError
from ..progress import enable_progress
from . import export, pipeline, profile, prune, search, sweep, zoo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hant", description="Hardware-aware network transformation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each epoch and measurement round")
    sub = parser.add_subparsers(dest="command", required=True)
    pipeline.register(sub, skip={"zoo", "search", "profile"})
    zoo.register(sub)
    profile.register(sub)
    search.register(sub)
    export.register(sub)
    sweep.register(sub)
    prune.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hant`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    distributed = init_from_env()
    enable_progress(sys.stderr.isatty() and rank() == 0)
    try:
        return args.func(args)
    except HantError as e:
        print(f"hant: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"hant: error: cannot use {e.filename or 'a file'!r}: {e.strerror or e}; check the path, its permissions "
              "and the free space, then run again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hant: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
