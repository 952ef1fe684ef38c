"""Run records on disk: `<out>/runs/<run_id>/record.json` beside its predictions, always written atomically.

Every file of a results folder is written here (`write_atomic`) and read back through the readers here, which name
the file and what is wrong with it: a truncated or garbled file is damaged (`DamagedFile`), never a crash and never
silently taken for a whole one; a write the disk refuses is a `WriteError` that names the file and leaves nothing
half-written behind.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from benchmark.core.predictions import ROWS_KEY, predictions_problem

RECORD_SCHEMA = 1

FULL = {errno.ENOSPC: "the disk is full", errno.EFBIG: "larger than the file-size limit allows",
        errno.EDQUOT: "the disk quota is reached"}  # fmt: skip
"""The errors of a write that more space (or a higher limit) would let through, and what each means."""


class WriteError(OSError, ValueError):
    """A file of a results folder that could not be written (a full disk, a file-size limit, a read-only folder),
    with the file named; nothing half-written is left behind. Also a ValueError: the command line reports it as one
    line, as it does every error it can name the cause of."""

    path: Path | None = None

    def __str__(self) -> str:
        return str(self.strerror)


class DamagedFile(ValueError):
    """A file of a results folder that exists but cannot be read: truncated, garbled, or not what it should hold."""


def run_dir(out_root: Path, run_id: str) -> Path:
    return Path(out_root) / "runs" / run_id


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write via a temp file in the same folder and `os.replace`, so a reader never sees half a file."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(path, err) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise write_error(path, err) from None
        raise


def write_error(path: Path, err: OSError) -> WriteError:
    """`err`, raised while writing `path`, as one line that names the file, says why and what to do."""
    why = err.strerror or str(err)
    code = errno.errorcode.get(err.errno or 0, "")
    if err.errno in FULL:
        why = f"{why} ({code}: {FULL[err.errno]}); nothing half-written was left behind: make room and run it again"
    elif code:
        why = f"{why} ({code})"
    error = WriteError(err.errno or errno.EIO, f"cannot write {path}: {why}")
    error.path = path
    return error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_record(path: Path, record: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file of a results folder; one that is there but cannot be read is a `DamagedFile` that names it and
    says whether it was cut off (truncated) or is garbled."""
    path = Path(path)
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError as err:
        raise DamagedFile(f"{path}: garbled (not UTF-8 text at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        whole = text.rstrip()  # what gain-bench writes ends with its closing bracket; a cut-off document does not
        cut = not whole.endswith(("}", "]")) or err.pos >= len(whole) or err.msg.startswith("Unterminated string")
        size = len(text.encode())
        what = f"truncated (it ends after {size} bytes" if cut else f"garbled ({err.msg} at character {err.pos}"
        raise DamagedFile(f"{path}: {what}; not a whole JSON document)") from None


def read_record(path: Path) -> dict[str, Any]:
    """A record, refusing a damaged one (`DamagedFile`) and one from an unknown schema version with the file named."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise DamagedFile(f"{path}: garbled (a JSON {type(record).__name__}, not a run record)")
    if record.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"{path}: record schema {record.get('schema')!r}, this gain-bench reads {RECORD_SCHEMA}")
    return record


# What a run folder holds, as the runner and the analysis see it (`inspect_run`); one definition of the names.
COMPLETE, FAILED, RUNNING, MISSING = "complete", "failed", "running", "missing"
DAMAGED, CONFLICT = "damaged", "conflict"
STATES = (COMPLETE, FAILED, RUNNING, MISSING, DAMAGED, CONFLICT)
STORAGE_ERROR = "storage_error"
"""The record key of a run that failed because a file could not be written (a full disk): the file. A re-run
trains such a run again without `--retry-failed`: it failed for want of space, not on its own account."""


def failed_for_space(record: dict[str, Any] | None) -> bool:
    """Whether a failed run failed because a file could not be written (`STORAGE_ERROR`, or the error a run's own
    record holds when the runner could not add the key: the disk was still full)."""
    if record is None or record.get("status") != FAILED:
        return False
    return bool(record.get(STORAGE_ERROR)) or str(record.get("error", "")).startswith(_WRITE_ERROR_NAMES)


# how a run's record names one: today's module, and the module's name before the package took its layer folders
_WRITE_ERROR_NAMES = (f"{WriteError.__module__}.{WriteError.__qualname__}:", "benchmark.store.WriteError:")


class RunState(NamedTuple):
    """What a run folder holds: its state (`STATES`), its record where one could be read, and what is wrong with
    it (`problem`, e.g. "predictions.csv: truncated ...") where something is: a `damaged` run's reason, or a complete
    run's missing checkpoint."""

    state: str
    record: dict[str, Any] | None
    problem: str = ""


def inspect_run(out_root: Path, run_id: str, config_hash: str) -> RunState:
    """The state of a run folder.

    `complete` needs the record's status, a matching `config_hash` and whole predictions beside it (a complete run
    without its `model.pt` stays complete, with the missing checkpoint as its `problem`: its results are whole, the
    post-run steps cannot use it, and `gain-bench run` trains it again); `running` is a record left by an attempt
    that is in progress, was killed or was interrupted (the lock tells which); `damaged` is a truncated or garbled
    `record.json`, or a complete record whose `predictions.csv` is missing, truncated or garbled (`problem` names
    the file and says what is wrong; a re-run replaces it); a folder whose record holds another configuration is a
    `conflict`, never overwritten (a damaged record too, where the hash it still shows is another one).
    """
    folder = run_dir(out_root, run_id)
    path = folder / "record.json"
    if not path.is_file():
        return RunState(MISSING, None)
    try:
        record = read_record(path)
    except (ValueError, OSError) as err:
        other = _hash_in(path)
        if other is not None and other != config_hash:
            return RunState(CONFLICT, None, f"record.json: {_reason(err, path)}; it names another configuration")
        return RunState(DAMAGED, None, f"record.json: {_reason(err, path)}")
    if record.get("config_hash") != config_hash:
        return RunState(CONFLICT, record)
    status = record.get("status")
    if status == COMPLETE:
        predictions = folder / "predictions.csv"
        problem = whole_predictions(predictions, record)
        if problem:
            return RunState(DAMAGED, record, f"predictions.csv: {problem}")
        if not (folder / "model.pt").is_file():
            return RunState(COMPLETE, record, "model.pt: missing (the record says complete)")
        return RunState(COMPLETE, record)
    if status == FAILED:
        return RunState(FAILED, record)
    if status in ("running", "interrupted"):
        return RunState(RUNNING, record)
    return RunState(DAMAGED, record, f"record.json: garbled (status {status!r})")


def trains_again(found: RunState, retry_failed: bool = False) -> bool:
    """Whether `gain-bench run` trains a run folder in this state: never a conflict or a whole complete run, a
    failed one only with `--retry-failed` unless it failed for want of space; everything else (missing, damaged,
    interrupted, complete without its checkpoint) is trained again."""
    if found.state == CONFLICT or (found.state == COMPLETE and not found.problem):
        return False
    return found.state != FAILED or retry_failed or failed_for_space(found.record)


def run_state(out_root: Path, run_id: str, config_hash: str) -> tuple[str, dict[str, Any] | None]:
    """(state, record) of a run folder: `inspect_run` without the problem."""
    state, record, _ = inspect_run(out_root, run_id, config_hash)
    return state, record


def _reason(err: Exception, path: Path) -> str:
    """An error reading `path` without the path (the caller names the file)."""
    return str(err).removeprefix(f"{path}: ")


def _hash_in(path: Path) -> str | None:
    """The config hash a damaged record still shows, if any."""
    try:
        found = re.search(r'"config_hash":\s*"([0-9a-f]{64})"', path.read_bytes().decode(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def whole_predictions(path: Path, record: dict[str, Any]) -> str | None:
    """What is wrong with a complete run's predictions (None: nothing), checked against the rows per role its record
    says were written (`predictions.ROWS_KEY`, where kept); looked at once per version of the file."""
    try:
        stat = path.stat()
    except OSError:
        return "missing (the record says complete)"
    rows = record.get(ROWS_KEY)
    rows = tuple(rows.items()) if isinstance(rows, dict) else None
    return _problem_of(str(path), stat.st_size, stat.st_mtime_ns, rows)


@functools.lru_cache(maxsize=4096)
def _problem_of(path: str, _size: int, _mtime_ns: int, rows: tuple[tuple[str, int], ...] | None) -> str | None:
    return predictions_problem(Path(path), dict(rows) if rows is not None else None)


SUITE_FILE = "suite.json"
REFERENCE_FILE = "reference.json"
THROUGHPUT_FILE = "throughput.json"
# The gallery: written by `benchmark.execute.gallery_maps` (torch), drawn by `benchmark.analyse.report.gallery` (no
# torch).
GALLERY_JSON = "gallery.json"
GALLERY_NPZ = "gallery.npz"
GALLERY_SCHEMA = 1
GALLERY_MEND = "`gain-bench report` writes it again where the checkpoints and the data are"


def read_gallery_files(out_root: Path) -> tuple[dict[str, Any], bytes] | None:
    """The gallery's metadata (`gallery.json`) and its arrays' bytes (`gallery.npz`) as they were written together;
    None where there is no `gallery.json`. Raises DamagedFile, saying what is wrong, where the JSON cannot be read,
    has another format than this version draws, or the arrays are missing or not the ones written with it."""
    path = Path(out_root) / GALLERY_JSON
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFile(f"the gallery in this results folder is unreadable ({GALLERY_JSON}: {err})") from err
    if not isinstance(meta, dict) or meta.get("schema") != GALLERY_SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else None
        raise DamagedFile(f"the gallery in this results folder ({GALLERY_JSON}) has format {found}, this version of "
                          f"gain-bench draws format {GALLERY_SCHEMA}")  # fmt: skip
    try:
        blob = (Path(out_root) / GALLERY_NPZ).read_bytes()
    except OSError as err:
        raise DamagedFile(f"the gallery in this results folder has no {GALLERY_NPZ} beside its {GALLERY_JSON}") from err
    if hashlib.sha256(blob).hexdigest() != meta.get("npz_sha256"):
        raise DamagedFile(f"the gallery in this results folder is inconsistent ({GALLERY_NPZ} is not the one written "
                          f"with {GALLERY_JSON})")  # fmt: skip
    return meta, blob


def suite_file_hint(out_root: Path) -> str:
    """What to do about a damaged `suite.json`: the folder cannot be read without it; the runner writes it again."""
    return (f"the folder cannot be read without its suite file; run `gain-bench run SUITE --out {out_root}` with the "
            "suite it was run with to write it again (finished runs are kept, nothing is trained twice)")  # fmt: skip


def throughput_rows(out_root: Path, current: set[str]) -> list[dict[str, Any]] | None:
    """The suite-level timings (`throughput.json`) if they were taken on the representatives `current` (their run
    ids) the folder holds now, else None; a damaged file is a `DamagedFile` naming it."""
    path = Path(out_root) / THROUGHPUT_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "run_id" in r for r in rows):
        raise DamagedFile(f"{path}: garbled (no list of timed runs under 'rows')")
    return rows if {r["run_id"] for r in rows} == current else None


def representatives(out_root: Path, groups: Iterable[list[tuple[str, str]]]) -> set[str]:
    """The run id of each configuration's representative (`pick_complete`), given each configuration's
    `(run_id, config_hash)` runs by ascending seed: what the suite-level timings and the gallery are taken on."""
    chosen = set()
    for runs in groups:
        index, _ = pick_complete(out_root, runs)
        if index is not None:
            chosen.add(runs[index][0])
    return chosen


def pick_complete(out_root: Path, runs: list[tuple[str, str]]) -> tuple[int | None, str]:
    """A configuration's representative among its `(run_id, config_hash)` runs (ascending seed): the index of the
    first complete run with a checkpoint, or None and why not."""
    states = [inspect_run(out_root, run_id, digest) for run_id, digest in runs]
    complete = [i for i, found in enumerate(states) if found.state == COMPLETE]
    for i in complete:
        if not states[i].problem:  # a complete run's only problem is a missing checkpoint
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

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise write_error(self.path, err) from None
        for attempt in range(attempts):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == attempts - 1:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        except OSError:  # a full disk: the lock holds all the same, only its note of the holder is missing
            pass
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
    """`reference.json` ({} where there is none); a damaged file is a `DamagedFile` naming it."""
    path = Path(out_root) / REFERENCE_FILE
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DamagedFile(f"{path}: garbled (not one reference per data and model setting)")
    return data
