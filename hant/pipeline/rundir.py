"""The run directory: where each stage's files live, and the record of each finished stage."""
from __future__ import annotations

from pathlib import Path

from ..io import read_json, write_json


class RunDir:
    """Paths of one run's files. Each stage writes only its own outputs."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    recipe = property(lambda self: self.root / "recipe.json")
    teacher_dir = property(lambda self: self.root / "teacher")
    teacher_weights = property(lambda self: self.root / "teacher" / "weights.safetensors")
    teacher_meta = property(lambda self: self.root / "teacher" / "meta.json")
    slots = property(lambda self: self.root / "slots.json")
    zoo = property(lambda self: self.root / "zoo.json")
    latency = property(lambda self: self.root / "latency.json")
    candidate_weights = property(lambda self: self.root / "distill" / "candidates")
    scores = property(lambda self: self.root / "scores.json")
    selection = property(lambda self: self.root / "selection.json")
    student_dir = property(lambda self: self.root / "student")
    student_metrics = property(lambda self: self.root / "student" / "metrics.json")
    prune_latency = property(lambda self: self.root / "prune_latency.json")
    pruned_dir = property(lambda self: self.root / "pruned")
    prune_result = property(lambda self: self.root / "pruned" / "prune.json")
    report_json = property(lambda self: self.root / "report.json")
    report_md = property(lambda self: self.root / "report.md")

    def stage_record_path(self, stage: str) -> Path:
        return self.root / ".stages" / f"{stage}.json"

    def stage_record(self, stage: str) -> dict | None:
        """What the last successful run of ``stage`` recorded (fingerprint, seconds), if any."""
        path = self.stage_record_path(stage)
        return read_json(path) if path.is_file() else None

    def write_stage_record(self, stage: str, record: dict) -> None:
        write_json(self.stage_record_path(stage), record)

    def stage_seconds(self) -> dict[str, float]:
        """Wall seconds of every finished stage, in the order they finished."""
        records = []
        folder = self.root / ".stages"
        for path in folder.glob("*.json") if folder.is_dir() else []:
            rec = read_json(path)
            records.append((rec.get("finished_at", 0.0), path.stem, rec["seconds"]))
        return {name: seconds for _, name, seconds in sorted(records)}
