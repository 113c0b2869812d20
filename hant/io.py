"""Atomic file writes and content hashes: nothing hant writes is ever left half-written."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import FileFormatError, HantError


def os_error(path: Path | str, exc: OSError, doing: str) -> HantError:
    """One line naming ``path`` and the cause of an ``OSError`` met while ``doing`` it."""
    cause = exc.strerror or str(exc)
    return HantError(f"cannot {doing} {str(path)!r}: {cause}; free space or fix permissions there and run again")


_WRITE_FAILURES = ("unexpected pos", "write failed", "I/O error", "os error")
"""How torch.save (RuntimeError) and safetensors (SafetensorError) word a failed write."""


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise os_error(path, e, "write") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise os_error(path, e, "write") from None
        if isinstance(e, (RuntimeError, SafetensorError)) and any(m in str(e) for m in _WRITE_FAILURES):
            raise HantError(
                f"cannot write {str(path)!r}: {str(e).splitlines()[0]} (the disk is full, the file too large, or the "
                "device failing); free space there and run again"
            ) from None
        raise


def write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (temporary file, then rename)."""

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")

    _atomic_write(Path(path), write)


def read_json(path: Path | str) -> Any:
    """Read a JSON file; an unreadable or malformed one raises a ``HantError`` naming it (a missing
    one raises ``FileNotFoundError``, which the CLI reports in one line)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise  # callers name the stage or command that makes the missing file
    except OSError as e:
        raise os_error(path, e, "read") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{str(path)!r} is not valid JSON ({e}); delete it and re-run the stage that writes it") from None


def write_text(path: Path | str, text: str) -> None:
    """Write text to ``path`` atomically."""
    _atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def save_tensors(path: Path | str, tensors: Mapping[str, torch.Tensor]) -> None:
    """Save a flat tensor dict as safetensors, atomically; shared storage is copied apart."""
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(flat, str(tmp)))


def load_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """Load a safetensors file onto the CPU; a damaged one raises a ``HantError`` naming it."""
    try:
        return load_file(str(path), device="cpu")
    except OSError as e:
        raise os_error(path, e, "read") from None
    except (SafetensorError, ValueError) as e:
        raise FileFormatError(f"{str(path)!r} is not a valid safetensors file ({e}); delete it and re-run the stage that writes it") from None


def check_tensors(path: Path | str) -> str | None:
    """Why a safetensors file is not complete (None when it is): its header must parse and every
    tensor's byte range must lie inside the file. Reads the header only."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 + n:
                return "truncated header"
            header = json.loads(f.read(n))
    except OSError as e:
        return e.strerror or str(e)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "unreadable header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    return None if 8 + n + max(ends, default=0) <= size else "truncated data"


def save_torch(path: Path | str, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically; a failed write leaves no temporary file."""
    _atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


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
