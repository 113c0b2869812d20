"""Checks that a stage's files on disk are whole before the runner trusts them as up to date.

Each check reads what the stage wrote and raises ``FileFormatError`` naming the first damaged
file: JSON that does not parse or holds nothing, a table or list that does not rebuild, a
safetensors file whose header or data is cut short. The checks read headers and small JSON
files only, so an up-to-date run stays quick to skip.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import FileFormatError, HantError
from ..io import check_tensors, read_json
from ..latency import LatencyTable
from ..ops_zoo import zoo_from_json
from ..slots import slots_from_json
from .rundir import RunDir


def _damaged(path: Path, why: str) -> FileFormatError:
    return FileFormatError(f"{str(path)!r} is damaged ({why})")


def _json(path: Path) -> Any:
    """The parsed content of a JSON output that must hold something."""
    data = read_json(path)
    if not data:
        raise _damaged(path, "it is empty")
    return data


def _tensors(path: Path) -> None:
    problem = check_tensors(path)
    if problem:
        raise _damaged(path, problem)


def _rebuilds(path: Path, parse: Callable[[Any], Any]) -> None:
    try:
        parse(_json(path))
    except HantError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _damaged(path, f"malformed: {type(e).__name__} {e}") from None


def _has_keys(path: Path, *keys: str) -> None:
    data = _json(path)
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise _damaged(path, f"no {', '.join(missing)}")


def check_teacher(run: RunDir) -> None:
    _tensors(run.teacher_weights)
    _has_keys(run.teacher_meta, "model")


def check_slots(run: RunDir) -> None:
    _rebuilds(run.slots, slots_from_json)


def check_zoo(run: RunDir) -> None:
    _rebuilds(run.zoo, zoo_from_json)


def check_profile(run: RunDir) -> None:
    try:
        table = LatencyTable.from_json(run.latency)
    except HantError as e:
        raise _damaged(run.latency, str(e)) from None
    if not table.entries:
        raise _damaged(run.latency, "it has no entries")


def check_distill(run: RunDir) -> None:
    _rebuilds(run.scores, lambda d: [rec["status"] for recs in d.values() for rec in recs.values()])
    for path in sorted(run.candidate_weights.glob("*.safetensors")):
        _tensors(path)


def check_search(run: RunDir) -> None:
    _has_keys(run.selection, "choices", "budget_ms")


def check_finetune(run: RunDir) -> None:
    _has_keys(run.student_dir / "arch.json", "format", "model")
    _tensors(run.student_dir / "weights.safetensors")
    _has_keys(run.student_metrics, "val_accuracy")


def check_report(run: RunDir) -> None:
    _has_keys(run.report_json, "teacher", "student")
    if not run.report_md.read_text().strip():
        raise _damaged(run.report_md, "it is empty")


def check_prune_profile(run: RunDir) -> None:
    _has_keys(run.prune_latency, "teacher_ms", "latency_ms")


def check_prune(run: RunDir) -> None:
    _has_keys(run.prune_result, "counts", "fit_rounds", "budget_fraction")
    _tensors(run.pruned_dir / "weights.safetensors")
