"""Failed reads and writes of hant's own files are one line naming the path and the cause,
and a failed write leaves no temporary file behind."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from tiny import tiny_recipe

import hant
from hant.cli.main import main
from hant.errors import FileFormatError, HantError
from hant.io import read_json, save_tensors
from hant.models import create_model
from hant.student import save_student

ROOT = Path(__file__).resolve().parents[1]

FULL_DISK = """
import resource, signal, sys, torch
from pathlib import Path
from hant.errors import HantError
from hant.io import save_tensors, save_torch, write_json

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
folder = Path(sys.argv[1])
writers = {
    "w.safetensors": lambda p: save_tensors(p, {"a": torch.zeros(10000)}),
    "train_state.pt": lambda p: save_torch(p, {"a": torch.zeros(10000)}),
    "big.json": lambda p: write_json(p, list(range(5000))),
}
for name, write in writers.items():
    try:
        write(folder / name)
        print("written", name)
    except HantError as e:
        print("HantError", e)
print("left:", sorted(p.name for p in folder.iterdir()))
"""


def test_writes_past_a_full_disk_fail_in_one_line_and_leave_nothing(tmp_path):
    """The file-size limit makes the kernel refuse the writes (EFBIG), as a full disk would (ENOSPC)."""
    folder = tmp_path / "out"
    folder.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK), str(folder)],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in ("w.safetensors", "train_state.pt", "big.json"):
        assert any(line.startswith("HantError cannot write") and name in line for line in lines), proc.stdout
    assert lines[-1] == "left: []"


def _student(path: Path) -> None:
    desc = {"name": "resnet18", "num_classes": 10, "in_chans": 1, "kwargs": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1]}}
    save_student(create_model(desc["name"], 10, 1, desc["kwargs"]), path, desc, [], {})


def test_a_truncated_or_pickled_student_weights_file_is_named(tmp_path):
    _student(tmp_path / "s")
    weights = tmp_path / "s" / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(FileFormatError, match="weights.safetensors"):
        hant.load_student(tmp_path / "s")
    torch.save({"a": torch.zeros(3)}, weights)
    with pytest.raises(FileFormatError, match="weights.safetensors"):
        hant.load_student(tmp_path / "s")


def test_unreadable_json_and_unwritable_paths_are_hant_errors(tmp_path):
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(HantError, match="folder.json"):
        read_json(tmp_path / "folder.json")
    (tmp_path / "bad.json").write_text("{\"a\": ")
    with pytest.raises(FileFormatError, match="bad.json"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "plain_file").write_text("x")
    with pytest.raises(HantError, match="plain_file"):
        save_tensors(tmp_path / "plain_file" / "w.safetensors", {"a": torch.zeros(2)})


def test_cli_run_dir_that_cannot_be_made_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    (tmp_path / "plain_file").write_text("x")
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "plain_file" / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plain_file" in err and "Traceback" not in err
