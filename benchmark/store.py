"""Run records on disk: `<out>/runs/<run_id>/record.json` beside its predictions, always written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RECORD_SCHEMA = 1


def run_dir(out_root: Path, run_id: str) -> Path:
    return Path(out_root) / "runs" / run_id


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write via a temp file in the same folder and `os.replace`, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_record(path: Path, record: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_record(path: Path) -> dict[str, Any]:
    """A record, refusing one from an unknown schema version with the file named."""
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a valid run record ({err})") from None
    if record.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"{path}: record schema {record.get('schema')!r}, this gain-bench reads {RECORD_SCHEMA}")
    return record
