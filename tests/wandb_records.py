"""Read the records of an offline W&B run file (``run-<id>.wandb``) without uploading it.

The file is a 7-byte header followed by a block-structured record log (32 KiB blocks; each
chunk has a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST); each record is a
protobuf ``Record`` from wandb's own schema.
"""
from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    records, chunk, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        chunk += data[pos : pos + length]
        pos += length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def logged_keys(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(history key → last JSON value, summary key → JSON value) of an offline run file."""
    history, summary = {}, {}
    for r in read_records(path):
        kind = r.WhichOneof("record_type")
        items = r.history.item if kind == "history" else r.summary.update if kind == "summary" else []
        target = history if kind == "history" else summary
        for item in items:
            key = item.key or "/".join(item.nested_key)
            target[key] = item.value_json
    return history, summary
