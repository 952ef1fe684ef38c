"""Run records on disk: `<out>/runs/<run_id>/record.json` beside its predictions, always written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import time
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


# What a run folder holds, as the runner sees it.
COMPLETE, FAILED, RUNNING, MISSING, CONFLICT = "complete", "failed", "running", "missing", "conflict"


def run_state(out_root: Path, run_id: str, config_hash: str) -> tuple[str, dict[str, Any] | None]:
    """(state, record) of a run folder.

    `complete` needs the record's status, a matching `config_hash` and the predictions beside it; `running` is a
    record left by an attempt that is in progress, was killed or was interrupted (the lock tells which); an
    unreadable record counts as `missing` (a rerun replaces it); a folder whose record holds another configuration
    is a `conflict`, never overwritten.
    """
    folder = run_dir(out_root, run_id)
    path = folder / "record.json"
    if not path.is_file():
        return MISSING, None
    try:
        record = read_record(path)
    except ValueError:
        return MISSING, None
    if record.get("config_hash") != config_hash:
        return CONFLICT, record
    status = record.get("status")
    if status == COMPLETE and (folder / "predictions.csv").is_file():
        return COMPLETE, record
    if status == FAILED:
        return FAILED, record
    if status in ("running", "interrupted"):
        return RUNNING, record
    return MISSING, record


REFERENCE_FILE = "reference.json"
THROUGHPUT_FILE = "throughput.json"


def throughput_rows(out_root: Path, current: set[str]) -> list[dict[str, Any]] | None:
    """The suite-level timings (`throughput.json`) if they were taken on the representatives `current` (their run
    ids) the folder holds now, else None."""
    path = Path(out_root) / THROUGHPUT_FILE
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())["rows"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    return rows if {r["run_id"] for r in rows} == current else None


def pick_complete(out_root: Path, runs: list[tuple[str, str]]) -> tuple[int | None, str]:
    """A configuration's representative among its `(run_id, config_hash)` runs (ascending seed): the index of the
    first complete run with a checkpoint, or None and why not."""
    complete = [i for i, (run_id, digest) in enumerate(runs) if run_state(out_root, run_id, digest)[0] == COMPLETE]
    for i in complete:
        if (run_dir(out_root, runs[i][0]) / "model.pt").is_file():
            return i, ""
    if complete:
        return None, "no checkpoint (model.pt) in its complete runs: skipped"
    return None, "no complete run yet: skipped"


class RunLock:
    """An exclusive, non-blocking `flock` on `runs/<run_id>/.lock`, held while a run trains.

    The kernel drops it when the holder dies (even by SIGKILL), so a killed runner never leaves a stale lock; a
    second runner on the same folder sees the lock taken and skips the run. The file names its holder.
    (flock is local to a machine on some network file systems; on a cluster the submitting runner assigns each run
    to exactly one job, so the lock there only guards against a second submission.)
    """

    def __init__(self, out_root: Path, run_id: str) -> None:
        self.path = run_dir(out_root, run_id) / ".lock"
        self._fd: int | None = None

    def acquire(self, attempts: int = 1) -> bool:
        """Take the lock; `attempts` > 1 retries a moment later (a `status` probe holds it for microseconds)."""
        import fcntl
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        for attempt in range(attempts):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == attempts - 1:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """True when another process holds the lock now. Read-only, so it works on a folder one may only read."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # closing drops the probe's shared lock
        return False

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def read_references(out_root: Path) -> dict[str, dict[str, Any]]:
    path = Path(out_root) / REFERENCE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it to measure the reference again") from None
    return data if isinstance(data, dict) else {}
