"""Atomic file writes and content hashes: nothing hant writes is ever left half-written."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors.torch import load_file, save_file


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (temporary file, then rename)."""

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")

    _atomic_write(Path(path), write)


def read_json(path: Path | str) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_text(path: Path | str, text: str) -> None:
    """Write text to ``path`` atomically."""
    _atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def save_tensors(path: Path | str, tensors: Mapping[str, torch.Tensor]) -> None:
    """Save a flat tensor dict as safetensors, atomically; shared storage is copied apart."""
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(flat, str(tmp)))


def load_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """Load a safetensors file onto the CPU."""
    return load_file(str(path), device="cpu")


def hash_obj(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable object."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def hash_file(path: Path | str) -> str:
    """Content hash of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
